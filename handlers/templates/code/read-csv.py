# Reading an uploaded CSV file: group by, plot, and write a result file.
# The request sends sales.csv in "files"; it is in the working directory.
import matplotlib.pyplot as plt
import pandas as pd

df = pd.read_csv("sales.csv", parse_dates=["date"])
df["revenue"] = df["units"] * df["price"]
print(f"{len(df)} rows, {df['region'].nunique()} regions, from {df['date'].min():%Y-%m-%d} to {df['date'].max():%Y-%m-%d}")

summary = (
    df.groupby("region")
    .agg(orders=("units", "size"), units=("units", "sum"), revenue=("revenue", "sum"))
    .round(2)
    .sort_values("revenue", ascending=False)
)

# Whatever the code writes under outputs/ comes back in output.files.
summary.to_csv("outputs/summary.csv")

fig, ax = plt.subplots(figsize=(7, 4))
ax.bar(summary.index, summary["revenue"], color="#4c72b0")
ax.set_title("Revenue by region")
ax.set_ylabel("Revenue")
for i, v in enumerate(summary["revenue"]):
    ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom")
plt.tight_layout()
plt.show()

summary
