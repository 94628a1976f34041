# Monthly sales as a bar chart, with the value on top of each bar.
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(42)
months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
sales = rng.integers(80, 200, size=len(months))

fig, ax = plt.subplots(figsize=(8, 5))
bars = ax.bar(months, sales, color="steelblue")
ax.bar_label(bars, padding=3)
ax.set_title("Monthly Sales")
ax.set_ylabel("Units sold")
ax.set_ylim(0, sales.max() * 1.15)
plt.show()
