"""The prototype's journey, replayed: create a user, create a url, post an event, then loop over
health, list users, get user, update user, redirect, list events.

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
        with self.client.post("/urls", json={"original_url": f"https://example.com/journey/{n}",
                                             "user_id": self.user_id, "title": "journey"},
                              name="POST /urls", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"status {r.status_code}")
                self.url = None
                return
            self.url = r.json()
        self.client.post("/events", json={"event_type": "journey", "url_id": self.url["id"],
                                          "user_id": self.user_id, "details": {"step": "start"}},
                         name="POST /events")

    @task
    def loop(self):
        if not self.user_id or not self.url:
            return
        self.client.get("/health", name="GET /health")
        self.client.get("/users?page=1&per_page=20", name="GET /users")
        self.client.get(f"/users/{self.user_id}", name="GET /users/{id}")
        self.client.put(f"/users/{self.user_id}", json={"username": f"renamed{self.user_id}"},
                        name="PUT /users/{id}")
        with self.client.get(f"/{self.url['short_code']}", name="GET /{short_code}",
                             allow_redirects=False, catch_response=True) as r:
            if r.status_code != 302:
                r.failure(f"status {r.status_code}")
        self.client.get(f"/events?url_id={self.url['id']}&per_page=50", name="GET /events")
