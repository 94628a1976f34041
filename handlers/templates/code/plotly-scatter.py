# An interactive scatter plot with plotly express.
import numpy as np
import pandas as pd
import plotly.express as px

rng = np.random.default_rng(1)
n = 150
df = pd.DataFrame(
    {
        "width": rng.normal(5, 1, n),
        "length": rng.normal(10, 2, n),
        "group": rng.choice(["alpha", "beta", "gamma"], n),
    }
)
df["area"] = df["width"] * df["length"]

fig = px.scatter(
    df,
    x="width",
    y="length",
    color="group",
    size="area",
    hover_data=["area"],
    title="Width vs length by group",
)
fig.show()
