# Aggregating sales per region and product with groupby.
import numpy as np
import pandas as pd

rng = np.random.default_rng(3)
n = 500
sales = pd.DataFrame(
    {
        "region": rng.choice(["North", "South", "East", "West"], n),
        "product": rng.choice(["Widget", "Gadget", "Doohickey"], n),
        "units": rng.integers(1, 20, n),
        "price": rng.uniform(5, 50, n).round(2),
    }
)
sales["revenue"] = sales["units"] * sales["price"]

by_region = sales.groupby("region").agg(
    orders=("units", "size"),
    units=("units", "sum"),
    revenue=("revenue", "sum"),
)
print(by_region.round(2))

top = sales.groupby(["region", "product"])["revenue"].sum().round(2).sort_values(ascending=False)
top.head(5)
