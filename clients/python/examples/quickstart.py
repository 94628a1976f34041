"""Run code, save its chart, read its DataFrame.

    PYEXEC_URL=http://localhost:8000 python3 examples/quickstart.py
"""

import os

from pyexec_client import Client, PyexecError

client = Client(os.environ.get("PYEXEC_URL", "http://localhost:8000"),
                api_key=os.environ.get("PYEXEC_API_KEY"))

code = """
import matplotlib.pyplot as plt
import pandas as pd
df = pd.DataFrame({"城市": ["北京", "上海"], "销售额": [120, 95]})
plt.bar(df["城市"], df["销售额"])
plt.show()
print("你好，pyexec")
df
"""
try:
    result = client.execute(code, timeout=30)
except PyexecError as e:  # refused: bad request, no key, busy (e.retry_after)...
    raise SystemExit("refused: %s" % e)

print(result.status, result.stdout, end="")
if result.error:
    print(result.error.traceback)
for i, chart in enumerate(result.charts):
    print("saved", chart.save("chart-%d.%s" % (i, chart.format)))
for frame in result.dataframes:
    print(frame.name, frame.columns, frame.data)
    try:
        print(frame.to_pandas())
    except ImportError:
        pass  # pandas is optional
