# The distribution of normally distributed samples, with its mean marked.
import matplotlib.pyplot as plt
import numpy as np

rng = np.random.default_rng(123)
samples = rng.normal(loc=170, scale=8, size=2000)

fig, ax = plt.subplots(figsize=(9, 5))
ax.hist(samples, bins=40, color="skyblue", edgecolor="white")
ax.axvline(samples.mean(), color="red", linestyle="--", label=f"mean = {samples.mean():.1f}")
ax.set_title("Height distribution (simulated)")
ax.set_xlabel("Height (cm)")
ax.set_ylabel("Count")
ax.legend()
plt.show()

print(f"mean {samples.mean():.2f}, std {samples.std():.2f}")
