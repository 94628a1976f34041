"""Puts clients/python on sys.path, so the tests import the package in
this tree whatever directory unittest was started from."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
