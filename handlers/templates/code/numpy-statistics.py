# Descriptive statistics with numpy.
import numpy as np

rng = np.random.default_rng(2024)
data = rng.normal(loc=50, scale=10, size=1000)

print(f"count     {data.size}")
print(f"mean      {np.mean(data):.3f}")
print(f"median    {np.median(data):.3f}")
print(f"std       {np.std(data, ddof=1):.3f}")
print(f"variance  {np.var(data, ddof=1):.3f}")
print(f"min / max {data.min():.3f} / {data.max():.3f}")
q1, q3 = np.percentile(data, [25, 75])
print(f"IQR       {q3 - q1:.3f} (Q1 {q1:.3f}, Q3 {q3:.3f})")

matrix = rng.integers(0, 10, size=(4, 5))
print("\nmatrix:\n", matrix)
print("column means:", matrix.mean(axis=0))
print("row sums:    ", matrix.sum(axis=1))
