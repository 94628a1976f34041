# Reshaping long data into a pivot table with totals.
import numpy as np
import pandas as pd

rng = np.random.default_rng(5)
n = 400
orders = pd.DataFrame(
    {
        "quarter": rng.choice(["Q1", "Q2", "Q3", "Q4"], n),
        "channel": rng.choice(["online", "store", "partner"], n),
        "amount": rng.gamma(2.0, 50.0, n).round(2),
    }
)

table = pd.pivot_table(
    orders,
    values="amount",
    index="quarter",
    columns="channel",
    aggfunc="sum",
    margins=True,
    margins_name="Total",
).round(2)
table
