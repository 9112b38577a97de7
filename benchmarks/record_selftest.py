"""Record the statistics `latenthdr selftest` compares against, with the weights shipped now.

    .venv/bin/python benchmarks/record_selftest.py

Run it whenever a shipped weight file, or what the convert stage measures, changes (and say so in the commit); it writes src/latenthdr/data/selftest.json.
"""

from __future__ import annotations

from latenthdr import io
from latenthdr.bench import selftest

if __name__ == "__main__":
    measured = selftest.measure()
    io.write_json(selftest.RECORD, measured, overwrite=True)
    print(f"recorded {', '.join(measured)} in {selftest.RECORD}")
