# Two lines in an interactive plotly chart built with graph_objects.
import numpy as np
import plotly.graph_objects as go

x = np.linspace(0, 4 * np.pi, 200)

fig = go.Figure()
fig.add_trace(go.Scatter(x=x, y=np.sin(x), mode="lines", name="sin(x)"))
fig.add_trace(go.Scatter(x=x, y=np.cos(x) * np.exp(-x / 8), mode="lines", name="damped cos(x)"))
fig.update_layout(title="Plotly line chart", xaxis_title="x", yaxis_title="y")
fig.show()
