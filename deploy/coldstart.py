#!/usr/bin/env python3
"""Cold start of each function's release binary, measured against a minimal Lambda Runtime API.

For every function: start the binary (target/release/<name>) with AWS_LAMBDA_RUNTIME_API
pointing here, hand it one event from events/ at its first `invocation/next`, and time process
start -> its `response` (or `error`) POST. That is Lambda's init + first invoke, minus the
sandbox. Run after `cargo build --release --bins` with the services and the demo sale up
(deploy/lambda_check.sh sets both up); prints a table and exits 1 if a function answered with
an error.  Usage: deploy/coldstart.py [RUNS]
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = [
    ("stock-query", "apigw-stock.json"),
    ("buy", "apigw-buy.json"),
    ("orders", "apigw-order.json"),
    ("admin", "apigw-admin-products.json"),
    ("order-consumer", "sqs-orders.json"),
    ("payment-timeout", "sqs-payment-timeouts.json"),
    ("outbox-retry", "schedule.json"),
    ("warmup", "schedule.json"),
]


class Runtime(http.server.BaseHTTPRequestHandler):
    event = b"{}"
    done = None  # (kind, body, time)
    served = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/invocation/next") and not Runtime.served:
            Runtime.served = True
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:f")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(Runtime.event)
        else:  # later polls wait until the process is killed
            time.sleep(2)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        Runtime.done = ("error" if "error" in self.path else "response", body, time.perf_counter())
        self.send_response(202)
        self.end_headers()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    failed = False
    print(f"{'function':<18} {'binary':>9} {'cold start (ms), best of ' + str(runs):>28}")
    for name, event in FUNCTIONS:
        binary = ROOT / "target" / "release" / name
        times = []
        for _ in range(runs):
            # A fresh runtime API per run: a killed process's last poll never reaches the next run.
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            api = f"127.0.0.1:{server.server_address[1]}"
            Runtime.event = (ROOT / "events" / event).read_bytes()
            Runtime.done, Runtime.served = None, False
            env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=api, AWS_LAMBDA_FUNCTION_NAME=name,
                       AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
                       AWS_LAMBDA_LOG_STREAM_NAME="local", AWS_LAMBDA_LOG_GROUP_NAME="local", RUST_LOG="warn")
            start = time.perf_counter()
            proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while Runtime.done is None and time.perf_counter() - start < 20:
                time.sleep(0.001)
            proc.kill()
            proc.wait()
            server.shutdown()
            server.server_close()
            if Runtime.done is None or Runtime.done[0] != "response":
                print(f"{name}: no response: {Runtime.done}")
                failed = True
                break
            times.append((Runtime.done[2] - start) * 1000)
        if times:
            size = binary.stat().st_size / 1e6
            print(f"{name:<18} {size:>7.1f}MB {min(times):>28.1f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
