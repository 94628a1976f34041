# Cleaning messy data: missing values, duplicates and types.
import numpy as np
import pandas as pd

raw = pd.DataFrame(
    {
        "name": ["Ana", "Ben", None, "Dan", "Eve", "Eve"],
        "age": [34, np.nan, 29, 41, np.nan, np.nan],
        "city": ["Lisbon", "Oslo", "Rome", None, "Oslo", "Oslo"],
        "spend": ["10.5", "7", "n/a", "3.25", "12", "12"],
    }
)
print("missing values per column:")
print(raw.isna().sum())

clean = raw.dropna(subset=["name"]).drop_duplicates().copy()
clean["age"] = clean["age"].fillna(clean["age"].median())
clean["city"] = clean["city"].fillna("unknown")
clean["spend"] = pd.to_numeric(clean["spend"], errors="coerce").fillna(0.0)
clean = clean.astype({"age": "int64"}).reset_index(drop=True)

print(f"\n{len(raw)} rows before, {len(clean)} after")
clean
