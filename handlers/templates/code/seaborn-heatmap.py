# A correlation matrix drawn as a seaborn heatmap.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

rng = np.random.default_rng(4)
n = 200
base = rng.normal(size=n)
df = pd.DataFrame(
    {
        "a": base,
        "b": base * 0.8 + rng.normal(0, 0.5, n),
        "c": -base * 0.5 + rng.normal(0, 1, n),
        "d": rng.normal(size=n),
        "e": base ** 2 + rng.normal(0, 0.3, n),
    }
)
corr = df.corr()

plt.figure(figsize=(7, 6))
sns.heatmap(corr, annot=True, fmt=".2f", cmap="coolwarm", vmin=-1, vmax=1, square=True)
plt.title("Correlation matrix")
plt.show()
