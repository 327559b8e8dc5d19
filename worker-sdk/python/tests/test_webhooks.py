"""Webhooks as an app receives them: a real job's events, verified with the Standard
Webhooks reference libraries from PyPI and npm (the README's two snippets)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class Receiver(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


# The README's Node snippet, on the deliveries this test received.
NODE_VERIFY = """
const { Webhook } = require("standardwebhooks");
const { secret, deliveries } = JSON.parse(require("fs").readFileSync(0, "utf8"));
for (const [headers, body] of deliveries) {
  const event = new Webhook(secret).verify(body, headers);
  if (!event.type.startsWith("job.")) throw new Error("unexpected " + event.type);
}
let refused = false;
try { new Webhook(secret).verify(deliveries[0][1].replace("job.", "job.x"), deliveries[0][0]); }
catch (e) { refused = true; }
if (!refused) throw new Error("a changed body verified");
console.log("node verified " + deliveries.length);
"""


def verify_with_node(secret: str, got: list) -> str:
    payload = json.dumps({"secret": secret, "deliveries": [[h, b.decode()] for h, b in got]})
    env = {**os.environ, "NODE_PATH": os.environ["GPUQ_TEST_NODE_PATH"]}
    out = subprocess.run(["node", "-e", NODE_VERIFY], input=payload, capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_jobs_events_arrive_signed_and_verify_with_the_reference_library(stack, workers):
    Receiver.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    admin = {"Authorization": f"Bearer {os.environ['GPUQ_ADMIN_TOKEN']}"}
    url = f"http://127.0.0.1:{server.server_address[1]}/gpuq"
    created = stack.session.post(f"{stack.api}/admin/webhooks", headers=admin, timeout=10,
                                 json={"url": url, "events": ["queued", "started", "completed"], "tenant": stack.user})
    assert created.status_code == 201, created.text
    endpoint, secret = created.json()["endpoint"]["id"], created.json()["secret"]
    try:
        job_id = stack.enqueue(num_images=3)
        workers.start()
        stack.wait_for(job_id, "completed")
        deadline = time.monotonic() + 15
        while len(Receiver.got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        events = {}
        for headers, body in Receiver.got:
            event = Webhook(secret).verify(body, headers)
            assert event["data"]["id"] == job_id
            events[event["type"]] = event
        assert set(events) == {"job.queued", "job.started", "job.completed"}, list(events)
        outputs = events["job.completed"]["data"]["outputs"]
        assert [o["path"] for o in outputs] == [f"{stack.user}/{job_id}/{i}.png" for i in range(3)]
        assert verify_with_node(secret, Receiver.got) == "node verified 3"
        ids = [h["webhook-id"] for h, _ in Receiver.got]
        assert len(set(ids)) == len(ids) == 3
        tampered = json.loads(Receiver.got[0][1])
        tampered["data"]["status"] = "failed"
        try:
            Webhook(secret).verify(json.dumps(tampered), Receiver.got[0][0])
            raise AssertionError("a changed body must not verify")
        except Exception as e:  # standardwebhooks raises WebhookVerificationError
            assert "verif" in type(e).__name__.lower() or "signature" in str(e).lower(), e
    finally:
        stack.session.delete(f"{stack.api}/admin/webhooks/{endpoint}", headers=admin, timeout=10)
        server.shutdown()
