"""Serve the lab's files from a folder of copies on loopback, in the upstream repository's layout.

CI proves the fresh-machine path with it: a clone with no data beside it downloads the lab's
datasets through the registry (``RNNLAB_DATA_URL`` pointed here), digests checked, as on a user's
machine. The lab keeps ElectricDevices as comma-separated ``.csv`` files; the copies here are the
UCR archive's tab-separated ``.tsv``, served with commas in their place (same readings, same size).

Usage: python lab_mirror.py COPIES_DIR PORT_FILE [SECONDS]; it writes its port to PORT_FILE, logs
every request on stderr and stops by itself after SECONDS (default 1200).
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UPSTREAM = {
    "/AirQuality/LondonAQ.npz": "LondonAQ.npz",
    "/Electric/ElectricDevices_TRAIN.csv": "ElectricDevices_TRAIN.tsv",
    "/Electric/ElectricDevices_TEST.csv": "ElectricDevices_TEST.tsv",
    "/Sentiment/Airlines.csv": "Airlines.csv",
    "/TextGeneration/poetry1.txt.gz": "poetry1.txt.gz",
    "/TextGeneration/poetry2.txt.gz": "poetry2.txt.gz",
}


def main() -> None:
    copies, port_file = Path(sys.argv[1]), Path(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 1200.0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = UPSTREAM.get(self.path)
            if name is None:
                self.send_error(404)
                return
            body = (copies / name).read_bytes()
            if self.path.endswith(".csv") and name.endswith(".tsv"):
                body = body.replace(b"\t", b",")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print(f"mirror: {self.path} {len(body):,} bytes", file=sys.stderr, flush=True)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file.write_text(str(server.server_port))
    threading.Timer(seconds, server.shutdown).start()  # never outlives the CI job
    server.serve_forever(0.1)


if __name__ == "__main__":
    main()
