#!/usr/bin/env python3
"""A grpo-cluster rollout worker in Python, written from docs/protocol.md, README.md and
docs/config.md alone (see README.md beside this file).

    python3 examples/python-worker/worker.py --coordinator ws://127.0.0.1:7070 --name py-1 --capacity 2

It connects, says Hello, builds a numpy Llama from the RunSpec and the weights it is sent, samples
every leased group with the weights it holds, scores it with the task's rewards and sends the
group back. Debian packages only: python3-numpy, python3-msgpack, python3-websockets.
Logs are one JSON line per event on stderr.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time

import numpy as np
import websockets

import wire
from llama import Llama, sample_group
from scoring import CharTokenizer, RunSpecUnsupported, reward_functions

PROTOCOL_VERSION = 1
LEARNER_REFUSALS = {"GRPO_ERR_REWARD_NAMES", "GRPO_ERR_PROMPT_TOKENS", "GRPO_ERR_BAD_ROLLOUT"}


def log(event, **fields):
    sys.stderr.write(json.dumps({"t": round(time.time(), 3), "event": event, **fields}) + "\n")
    sys.stderr.flush()


def fnv1a(text):
    """32-bit FNV-1a over UTF-16 code units (ASCII here), as docs/protocol.md section 10.2 derives seeds."""
    h = 0x811C9DC5
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | (data[i + 1] << 8)
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def connect(url, token):
    """websockets.connect with the bearer token and no message size limit (a chunk frame is 1 MiB + 16 bytes)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kw = {"max_size": None, "compression": None, "ping_interval": None}
    if int(websockets.__version__.split(".")[0]) >= 14:
        return websockets.connect(url, additional_headers=headers, **kw)
    return websockets.connect(url, extra_headers=headers, **kw)


class Worker:
    def __init__(self, args):
        self.args = args
        self.spec = None
        self.tok = None
        self.rewards = None
        self.unsupported = None  # why this worker cannot serve the current RunSpec
        self.model = None
        self.version = None  # weights version loaded into self.model
        self.pending = None  # (version, tensors) assembled, not loaded yet
        self.leases = {}  # leaseId -> Lease message, current on this connection
        self.queue = []  # leaseIds waiting to be sampled
        self.sent = set()  # group ids reported, for telling learner refusals apart
        self.counts = {"groups": 0, "failed": 0, "refused": 0, "weights": 0}

    # ---- one connection ----
    async def session(self, ws):
        self.ws = ws
        self.assembler = wire.WeightsAssembler()
        self.leases, self.queue = {}, []
        await self.send({"kind": wire.HELLO, "protocolVersion": PROTOCOL_VERSION, "role": "worker", "name": self.args.name,
                         "capacity": self.args.capacity, "policyVersion": self.version})
        welcome = wire.decode(await ws.recv())
        if welcome["kind"] != wire.WELCOME:
            log("refused", message=welcome)
            return
        log("welcomed", session=welcome["sessionId"], policyVersion=welcome["policyVersion"], weightsVersion=welcome["weightsVersion"])
        if self.version is not None:  # section 10.3: Ready with what we hold, newer weights follow
            await self.send({"kind": wire.READY, "policyVersion": self.version})
        self.wake = asyncio.Event()
        tasks = [asyncio.ensure_future(self.heartbeat(welcome["heartbeatMs"] / 1000)), asyncio.ensure_future(self.work())]
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    continue  # the coordinator sends binary frames only
                await self.on_message(wire.decode(frame))
        finally:
            for t in tasks:
                t.cancel()

    async def send(self, msg):
        await self.ws.send(wire.encode(msg))

    async def heartbeat(self, period):
        while True:
            await asyncio.sleep(period)
            await self.ws.ping()
            await self.send({"kind": wire.HEARTBEAT, "time": int(time.time() * 1000), "leaseIds": list(self.leases)})

    async def on_message(self, m):
        k = m["kind"]
        if k == wire.RUN_SPEC:
            self.apply_spec(m["spec"])
        elif k in (wire.WEIGHTS_BEGIN, wire.WEIGHTS_CHUNK, wire.WEIGHTS_END):
            try:
                done = self.assembler.push(m)
            except wire.ProtocolError as e:
                log("weights_failed", code=e.code, error=e.message)
                await self.ws.close(wire.CLOSE_WEIGHTS_CORRUPT, e.code)  # a fresh session gets them again
                return
            if done is not None:
                self.pending = (done[0], done[2])
                log("weights_received", version=done[0], encoding=done[1], tensors=len(done[2]))
        elif k == wire.LEASE:
            self.leases[m["leaseId"]] = m
            self.queue.append(m["leaseId"])
        elif k == wire.LEASE_REVOKED:
            self.leases.pop(m["leaseId"], None)
        elif k == wire.ERROR:
            refused = m.get("ref") in self.sent and m["code"] in LEARNER_REFUSALS
            self.counts["refused"] += refused
            log("learner_refused" if refused else "coordinator_error", code=m["code"], error=m["message"], ref=m.get("ref"))
        self.wake.set()

    def apply_spec(self, spec):
        if self.spec is not None and spec["model"] != self.spec["model"]:
            self.model, self.version = None, None  # another architecture: wait for its weights
        self.spec, self.unsupported = spec, None
        try:
            self.tok = CharTokenizer(spec["tokenizer"], spec["specialTokens"])
            self.rewards = reward_functions(spec)
        except RunSpecUnsupported as e:
            self.unsupported = str(e)
        log("run_spec", run=spec["runId"], task=spec["task"]["name"], rewards=[f["name"] for f in spec["rewards"]["functions"]],
            unsupported=self.unsupported)

    # ---- the work loop: load weights between batches, then sample one lease at a time ----
    async def work(self):
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while True:
                if self.pending is not None and self.spec is not None:
                    version, tensors = self.pending
                    self.pending = None
                    self.model = await loop.run_in_executor(None, Llama, self.spec["model"], tensors)
                    self.version = version
                    self.counts["weights"] += 1
                    log("weights_loaded", version=version)
                    await self.send({"kind": wire.READY, "policyVersion": version})
                    continue
                if not self.queue or (self.model is None and self.unsupported is None):
                    break
                lease = self.leases.get(self.queue.pop(0))
                if lease is None:
                    continue  # revoked meanwhile
                if self.unsupported is not None:
                    for g in lease["groups"]:
                        await self.fail(lease, g, "GRPO_ERR_RUN_SPEC", f"worker {self.args.name} cannot serve this run: {self.unsupported}")
                    continue
                model, version = self.model, self.version
                outcomes = await loop.run_in_executor(None, self.rollout_lease, model, version, lease)
                if lease["leaseId"] not in self.leases:
                    continue  # revoked while sampling: the coordinator re-queued it
                results = [o for o in outcomes if "completions" in o]
                for o in outcomes:
                    if "code" in o:
                        await self.fail(lease, o, o["code"], o["message"])
                if results:
                    self.sent.update(r["groupId"] for r in results)
                    self.counts["groups"] += len(results)
                    await self.send({"kind": wire.GROUPS, "leaseId": lease["leaseId"], "results": results})
                    log("groups_sent", lease=lease["leaseId"], groups=len(results), version=version)
                self.leases.pop(lease["leaseId"], None)

    async def fail(self, lease, g, code, message):
        self.counts["failed"] += 1
        log("group_failed", group=g["groupId"], code=code, error=message)
        await self.send({"kind": wire.GROUP_FAILED, "leaseId": lease["leaseId"], "groupId": g["groupId"], "code": code, "message": message})

    def rollout_lease(self, model, version, lease):
        return [self.rollout_group(model, version, g) for g in lease["groups"]]

    def rollout_group(self, model, version, g):
        """One GroupRollout (or a failure with a code) for one GroupSpec."""
        s = self.spec["sampling"]
        try:
            prompt_ids = self.tok.prompt_ids(g["prompt"])
            seed = fnv1a(f"{s['seed']}|{g['groupId']}")
            rngs = [np.random.default_rng([seed, r]) for r in range(g["groupSize"])]
            tokens, logprobs, finish = sample_group(model, prompt_ids, g["groupSize"], s, self.tok.stops, rngs)
        except Exception as e:  # noqa: BLE001 - every failure is reported with a code
            return {"groupId": g["groupId"], "code": "GRPO_ERR_ROLLOUT", "message": f"sampling failed: {e}"}
        completions = []
        for toks, lps, why in zip(tokens, logprobs, finish):
            text = self.tok.completion_text(toks)
            rewards = {}
            for name, fn in self.rewards.items():
                for attempt in range(self.spec["rewards"]["retries"] + 1):
                    try:
                        rewards[name] = float(fn(g["prompt"], text, g.get("meta")))
                        break
                    except Exception as e:  # noqa: BLE001
                        if attempt == self.spec["rewards"]["retries"]:
                            return {"groupId": g["groupId"], "code": "GRPO_ERR_REWARD_FAILED", "message": f"reward {name} failed: {e}"}
            completions.append({"tokens": [int(t) for t in toks], "logprobs": lps, "text": text, "rewards": rewards, "finishReason": why})
        return {"groupId": g["groupId"], "policyVersion": version, "promptTokens": prompt_ids, "completions": completions}


async def main(args):
    worker = Worker(args)
    delay, deadline = 0.25, time.monotonic() + args.max_seconds if args.max_seconds > 0 else None
    while deadline is None or time.monotonic() < deadline:
        try:
            async with connect(args.coordinator, args.token) as ws:
                delay = 0.25  # reset after a connection
                await (worker.session(ws) if deadline is None else asyncio.wait_for(worker.session(ws), deadline - time.monotonic()))
                code = ws.close_code
        except asyncio.TimeoutError:
            break
        except (OSError, websockets.exceptions.WebSocketException) as e:
            status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                log("auth_refused", error=str(e))
                return 2
            code = getattr(e, "code", None)
            log("disconnected", error=str(e))
        if code == wire.CLOSE_PROTOCOL_VERSION:
            log("protocol_version_refused")
            return 2
        log("reconnecting", code=code, delay=round(delay, 3))
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 10.0)
    log("done", **worker.counts)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coordinator", required=True, help="ws://host:port of the coordinator")
    p.add_argument("--token", default=os.environ.get("GRPO_TOKEN"), help="bearer token (default: env GRPO_TOKEN)")
    p.add_argument("--name", default=f"python-worker@{os.uname().nodename}")
    p.add_argument("--capacity", type=int, default=2, help="groups per lease")
    p.add_argument("--max-seconds", type=float, default=0, help="exit after this long (0 = run until killed)")
    sys.exit(asyncio.run(main(p.parse_args())))
