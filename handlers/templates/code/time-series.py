# A daily time series: monthly resampling and a rolling mean.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

rng = np.random.default_rng(21)
days = pd.date_range("2024-01-01", periods=366, freq="D")
trend = np.linspace(100, 130, days.size)
season = 10 * np.sin(2 * np.pi * days.dayofyear / 365.25)
series = pd.Series(trend + season + rng.normal(0, 3, days.size), index=days, name="value")

rolling = series.rolling(window=30).mean()
monthly = series.resample("MS").mean().round(2)

fig, ax = plt.subplots(figsize=(10, 5))
ax.plot(series.index, series, alpha=0.4, label="daily")
ax.plot(rolling.index, rolling, color="tab:red", label="30-day rolling mean")
ax.set_title("Daily values with a rolling mean")
ax.legend()
plt.show()

monthly.to_frame("monthly mean")
