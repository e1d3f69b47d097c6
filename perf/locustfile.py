"""The prototype's journey, replayed: create a user, create a url, post an event, then loop over
health, list users, get user, update user, redirect, list events. A campaign's steps ride along
(issue #11): the url is tagged, forwards its query and expires in a year; each user also makes a
batch of 20 urls with `POST /urls/bulk` at start, and the loop searches (`?q=`, `?tag=`), follows
the link with campaign parameters and fetches its QR code now and then.

Run headless (perf/run.sh does this at 50, 200 and 500 users):
    locust -f perf/locustfile.py --headless -u 500 -r 100 -t 40s --host http://127.0.0.1:18080
Distributed: add --master / --worker (the Helm chart's optional Locust deployment does).
"""

import itertools
import os
import uuid

from locust import FastHttpUser, between, task

_counter = itertools.count()
_run = uuid.uuid4().hex[:8]


class Journey(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self):
        n = next(_counter)
        email = f"journey-{_run}-{os.getpid()}-{n}@perf.example"
        with self.client.post("/users", json={"username": f"journey{n}", "email": email},
                              name="POST /users", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"status {r.status_code}")
                self.user_id = None
                return
            self.user_id = r.json()["id"]
        self.tag = f"campaign-{_run}-{n % 10}"
        with self.client.post("/urls", json={"original_url": f"https://example.com/journey/{n}",
                                             "user_id": self.user_id, "title": f"journey {n}",
                                             "tags": [self.tag], "forward_query": True,
                                             "expires_at": "2036-01-01T00:00:00"},
                              name="POST /urls", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"status {r.status_code}")
                self.url = None
                return
            self.url = r.json()
        self.client.post("/events", json={"event_type": "journey", "url_id": self.url["id"],
                                          "user_id": self.user_id, "details": {"step": "start"}},
                         name="POST /events")
        batch = [{"original_url": f"https://example.com/journey/{n}/{i}", "user_id": self.user_id,
                  "tags": [self.tag]} for i in range(20)]
        with self.client.post("/urls/bulk", json=batch, name="POST /urls/bulk",
                              catch_response=True) as r:
            if r.status_code != 201 or len(r.json().get("created", [])) != 20:
                r.failure(f"status {r.status_code}")
        self.loops = 0

    @task
    def loop(self):
        if not self.user_id or not self.url:
            return
        self.client.get("/health", name="GET /health")
        self.client.get("/users?page=1&per_page=20", name="GET /users")
        self.client.get(f"/users/{self.user_id}", name="GET /users/{id}")
        self.client.put(f"/users/{self.user_id}", json={"username": f"renamed{self.user_id}"},
                        name="PUT /users/{id}")
        with self.client.get(f"/{self.url['short_code']}?utm_source=locust&utm_medium=journey",
                             name="GET /{short_code}", allow_redirects=False,
                             catch_response=True) as r:
            if r.status_code != 302 or "utm_source=locust" not in r.headers.get("location", ""):
                r.failure(f"status {r.status_code}")
        self.client.get(f"/events?url_id={self.url['id']}&per_page=50", name="GET /events")
        self.client.get(f"/urls?q=journey%20{self.user_id % 97}&per_page=20", name="GET /urls?q")
        self.client.get(f"/urls?tag={self.tag}&per_page=20", name="GET /urls?tag")
        self.loops += 1
        if self.loops % 10 == 1:
            self.client.get(f"/urls/{self.url['id']}/qr.svg", name="GET /urls/{id}/qr.svg")
