"""A session: upload a CSV, run two cells, download what the code wrote.

    PYEXEC_URL=http://localhost:8000 python3 examples/session_files.py
"""

import os

from pyexec_client import Client

client = Client(os.environ.get("PYEXEC_URL", "http://localhost:8000"),
                api_key=os.environ.get("PYEXEC_API_KEY"))

with client.session(timeout=30) as s:  # DELETE /sessions/{id} on exit
    s.upload("销售.csv", "地区,金额\n华北,80\n华南,95.25\n")
    s.run("import pandas as pd\ndf = pd.read_csv('销售.csv')")
    r = s.run("df.groupby('地区')['金额'].sum().to_csv('outputs/result.csv')\nprint(len(df))")
    print(r.stdout, [f.name for f in r.files])
    print(s.download("outputs/result.csv").decode("utf-8"))
