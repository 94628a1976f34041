# Fitting a straight line with numpy.polyfit and plotting the fit.
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(8)
x = np.linspace(0, 10, 50)
y = 2.5 * x + 4 + rng.normal(0, 2, x.size)

slope, intercept = np.polyfit(x, y, deg=1)
fitted = slope * x + intercept
r_squared = 1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)
print(f"y = {slope:.3f} x + {intercept:.3f}   (R^2 = {r_squared:.3f})")

fig, ax = plt.subplots(figsize=(8, 5))
ax.scatter(x, y, label="data", color="tab:blue")
ax.plot(x, fitted, color="tab:red", label="least-squares fit")
ax.set_title("Linear regression with numpy.polyfit")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
plt.show()
