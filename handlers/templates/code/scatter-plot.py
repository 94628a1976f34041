# A scatter plot of two correlated variables, coloured by a third.
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(7)
x = rng.normal(0, 1, 200)
y = 0.8 * x + rng.normal(0, 0.5, 200)
size = rng.uniform(10, 120, 200)

fig, ax = plt.subplots(figsize=(8, 6))
points = ax.scatter(x, y, c=y - x, s=size, cmap="viridis", alpha=0.7)
fig.colorbar(points, ax=ax, label="y - x")
ax.set_title(f"Scatter plot (r = {np.corrcoef(x, y)[0, 1]:.2f})")
ax.set_xlabel("x")
ax.set_ylabel("y")
plt.show()
