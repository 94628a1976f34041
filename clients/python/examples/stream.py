"""Stream a long run's output as it is printed (Server-Sent Events).

    PYEXEC_URL=http://localhost:8000 python3 examples/stream.py
"""

import os
import sys

from pyexec_client import Client

client = Client(os.environ.get("PYEXEC_URL", "http://localhost:8000"),
                api_key=os.environ.get("PYEXEC_API_KEY"))

code = "import time\nfor i in range(5):\n    print('第', i, '步', flush=True)\n    time.sleep(0.5)\n"
with client.stream(code) as events:
    for ev in events:
        if ev.event in ("stdout", "stderr"):
            sys.stdout.write(ev.text)
        elif ev.event == "chart":
            print("chart:", ev.chart.width, "x", ev.chart.height)
        elif ev.event == "result":
            print("status:", ev.result.status)
        elif ev.event == "error":
            raise ev.exception
