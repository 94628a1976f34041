# Summary statistics of a DataFrame with describe() and value_counts().
import numpy as np
import pandas as pd

rng = np.random.default_rng(11)
people = pd.DataFrame(
    {
        "age": rng.integers(18, 80, 300),
        "income": rng.lognormal(10.5, 0.4, 300).round(0),
        "score": rng.normal(70, 12, 300).round(1),
        "city": rng.choice(["Berlin", "Paris", "Madrid", "Rome"], 300),
    }
)

print(people.dtypes)
print()
print(people["city"].value_counts())

people.describe().round(2)
