# Four kinds of chart in one figure with plt.subplots.
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(0)
x = np.linspace(0, 2 * np.pi, 200)

fig, axes = plt.subplots(2, 2, figsize=(10, 8))
axes[0, 0].plot(x, np.sin(x), color="tab:blue")
axes[0, 0].set_title("Line")
axes[0, 1].bar(["A", "B", "C", "D"], [3, 7, 5, 2], color="tab:orange")
axes[0, 1].set_title("Bar")
axes[1, 0].scatter(rng.normal(size=100), rng.normal(size=100), s=12, color="tab:green")
axes[1, 0].set_title("Scatter")
axes[1, 1].hist(rng.normal(size=1000), bins=30, color="tab:purple")
axes[1, 1].set_title("Histogram")
fig.suptitle("Subplots")
fig.tight_layout()
plt.show()
