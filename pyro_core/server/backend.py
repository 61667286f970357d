# Where the HTTP app's writes and reads go: this node's ingester alone, or the cluster over the ring.
# Owns: LocalIngester (storage + the apps' metadata: what the internal endpoints and local calls
# use), LocalBackend (a node on its own), ClusterBackend (the trio shell of the distributor and the
# querier: plans pushes with distributor.plan_push, sends each ingester its series in parallel — a
# direct call for this instance, the internal HTTP API for peers — decides with PushTracker, lets
# late replicas finish in the background; queries in two steps — every ingester of
# querier.query_targets reports its samples per series and bucket, then each merges the pieces for
# which it holds the most complete replica, querier.assign_replicas), and the errors the app turns
# into status codes.
# Must not know: request parsing, response formats, SWIM or CRDT rules.
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx2
import trio
from prometheus_client import CollectorRegistry, Counter

from pyro_core.net.cluster import ClusterMember
from pyro_core.ring.errors import RingError
from pyro_core.server import flameql
from pyro_core.server.distributor import PushTracker, Series, plan_push
from pyro_core.server.internal import (
    CONTENT_TYPE,
    LABELS_PATH,
    MERGE_PATH,
    PUSH_PATH,
    SELECT_PATH,
    InternalProtocolError,
    LabelsRequest,
    MergeRequest,
    Meta,
    QueryRequest,
    SeriesBuckets,
    SeriesIndex,
    SeriesKey,
    SeriesWrite,
    decode_labels_result,
    decode_merge_result,
    decode_select_result,
    encode_labels_request,
    encode_merge,
    encode_push,
    encode_query,
)
from pyro_core.server.querier import assign_replicas, merge_meta, merge_union, query_targets
from pyro_core.server.storage import APP_LABEL, FlatStacks, Storage, merge_stacks
from pyro_core.server.tree import StackTree

__all__ = [
    "Backend",
    "BackendError",
    "ClusterBackend",
    "LocalBackend",
    "LocalIngester",
]

log = logging.getLogger("pyro_core.server")


class BackendError(Exception):
    """A write or read that cannot be served: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalIngester:
    """This node's ingester: the storage plus the metadata (spyName, sampleRate, units) of the apps it
    received. Blocking: call from a worker thread."""

    #: Pushes of at most this many stacks are added to the head on the event loop itself (tens of
    #: microseconds); bigger ones, and any push while a flush holds the storage, go to a thread.
    INLINE_STACKS = 4096

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._meta: dict[tuple[str, str], Meta] = {}
        self._sync_done: trio.Event | None = None  # set when the fsync in flight returns

    @staticmethod
    def _profiles(writes: Sequence[SeriesWrite]) -> list[tuple[Mapping[str, str], float, Any, str | None]]:
        return [(w.labels, w.timestamp, w.stacks, w.profile_id) for w in writes]

    def _remember_meta(self, tenant: str, writes: Sequence[SeriesWrite]) -> None:
        for w in writes:
            app = w.labels.get(APP_LABEL)
            if app is not None:
                self._meta[(tenant, app)] = w.meta

    def push(self, tenant: str, writes: Sequence[SeriesWrite]) -> int:
        """Store every series durably (blocking: call from a thread); returns how many were new (a
        repeated profile id is acknowledged and not counted twice). Raises ValueError/TypeError on
        invalid series, before storing any."""
        result = self.storage.ingest_batch(tenant, self._profiles(writes))
        assert result is not None  # blocking
        self._remember_meta(tenant, writes)
        self.storage.sync_to(result[1])  # one fsync for the batch (shared with concurrent ones)
        return result[0]

    async def push_async(self, tenant: str, writes: Sequence[SeriesWrite]) -> int:
        """``push`` from the event loop: small pushes go into the WAL (unsynced) and the head right
        here, and wait for a group fsync that one worker thread runs for every push waiting at that
        moment — one thread hop per fsync instead of one per request."""
        profiles = self._profiles(writes)
        result = None
        if sum(len(w.stacks) for w in writes) <= self.INLINE_STACKS:
            result = self.storage.ingest_batch(tenant, profiles, blocking=False)
        if result is None:
            result = await trio.to_thread.run_sync(
                lambda: self.storage.ingest_batch(tenant, profiles, blocking=True)
            )
        assert result is not None
        self._remember_meta(tenant, writes)
        stored, position = result
        await self._wait_durable(position)
        return stored

    async def _wait_durable(self, position: Any) -> None:
        storage = self.storage
        while not storage.is_synced(position):
            done = self._sync_done
            if done is not None:  # an fsync is running: it may cover us; check again when it returns
                await done.wait()
                continue
            done = self._sync_done = trio.Event()
            try:
                wal = storage.wal
                await trio.to_thread.run_sync(wal.sync, wal.position())
            finally:
                self._sync_done = None
                done.set()

    def meta(self, tenant: str, apps: Sequence[str]) -> dict[str, Meta]:
        return {a: m for a in apps if (m := self._meta.get((tenant, a))) is not None}

    @staticmethod
    def _parse(request: QueryRequest) -> flameql.Query:
        try:
            return flameql.parse(request.query)
        except flameql.QueryError as exc:
            raise InternalProtocolError(f"query request: {exc}") from None

    def query(self, request: QueryRequest) -> tuple[SeriesBuckets, dict[str, Meta]]:
        """Every selected series' samples, per bucket (what this ingester holds, for inspection)."""
        query = self._parse(request)
        series = self.storage.query_series(request.tenant, query, request.start, request.end)
        return series, self.meta(request.tenant, [query.app_name])

    def select(self, request: QueryRequest) -> tuple[SeriesIndex, dict[str, Meta]]:
        """The first step of a cluster query: how many samples this ingester holds per selected
        series and bucket."""
        query = self._parse(request)
        index = self.storage.query_index(request.tenant, query, request.start, request.end)
        return index, self.meta(request.tenant, [query.app_name])

    def merge(self, request: MergeRequest) -> FlatStacks:
        """The second step: the merged samples of the pieces the querier chose this ingester for."""
        q = request.query
        return self.storage.query_merge(q.tenant, self._parse(q), q.start, q.end, frozenset(request.wanted))

    def labels(self, request: LabelsRequest) -> tuple[list[str], dict[str, Meta]]:
        if request.kind == "names":
            return self.storage.label_names(request.tenant), {}
        if request.kind == "values":
            return self.storage.label_values(request.tenant, request.name), {}
        apps = self.storage.apps(request.tenant)
        return apps, self.meta(request.tenant, apps)


class Backend(Protocol):
    """What the HTTP app needs: write a tenant's series, read them back."""

    async def push(self, tenant: str, writes: Sequence[SeriesWrite]) -> None: ...

    async def query(
        self, tenant: str, query: flameql.Query, start: float, end: float
    ) -> tuple[StackTree, Meta | None]: ...

    async def labels(self, request: LabelsRequest) -> tuple[list[str], dict[str, Meta]]: ...


class LocalBackend:
    """A node on its own: every write and read goes to this node's ingester."""

    def __init__(self, ingester: LocalIngester) -> None:
        self.ingester = ingester

    async def push(self, tenant: str, writes: Sequence[SeriesWrite]) -> None:
        try:
            await self.ingester.push_async(tenant, writes)
        except (ValueError, TypeError) as exc:
            raise BackendError(422, str(exc)) from None

    async def query(
        self, tenant: str, query: flameql.Query, start: float, end: float
    ) -> tuple[StackTree, Meta | None]:
        ingester = self.ingester

        def run() -> tuple[StackTree, Meta | None]:
            tree = ingester.storage.query(tenant, query, start, end)
            return tree, ingester.meta(tenant, [query.app_name]).get(query.app_name)

        return await trio.to_thread.run_sync(run)

    async def labels(self, request: LabelsRequest) -> tuple[list[str], dict[str, Meta]]:
        return await trio.to_thread.run_sync(self.ingester.labels, request)


class _Unreachable(Exception):
    """A peer call that failed; ``client_error`` for a 4xx answer."""

    def __init__(self, message: str, *, client_error: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.client_error = client_error
        self.status = status


class ClusterBackend:
    """The distributor and querier over the ring gossiped by ``member``. Start it with
    ``await nursery.start(backend.run)`` (it owns the HTTP client and the tasks of replicas that
    answer after a push was decided)."""

    def __init__(
        self,
        ingester: LocalIngester,
        member: ClusterMember,
        *,
        replication_factor: int = 1,
        heartbeat_timeout: float = 60.0,
        zone_awareness: bool = False,
        shard_size: Callable[[str], int] = lambda tenant: 0,
        querier_shuffle_sharding: bool = False,
        query_lookback: float = 0.0,
        timeout: float = 10.0,
        authorization: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        from pyro_core import Ring

        if member.registration is None:
            raise ValueError("a cluster backend needs a member registered in the ring")
        self.ingester = ingester
        self.member = member
        self.instance_id = member.registration.instance_id
        self.ring_key = member.registration.ring_key
        self.shard_size = shard_size
        self.querier_shuffle_sharding = querier_shuffle_sharding
        self.query_lookback = query_lookback
        self.timeout = timeout
        self._headers = {"content-type": CONTENT_TYPE}
        if authorization:
            self._headers["authorization"] = authorization
        self._ring = Ring(
            replication_factor=replication_factor,
            zone_awareness=zone_awareness,
            heartbeat_timeout=heartbeat_timeout,
        )
        self._ring_source: object = None
        self._client: httpx2.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        registry = CollectorRegistry() if registry is None else registry
        self._append_failures = Counter(
            "pyroscope_distributor_ingester_append_failures",
            "Series batches an ingester failed to store, per ingester and kind (4xx client, 5xx server)",
            ["ingester", "type"],
            registry=registry,
        )
        self._push_failures = Counter(
            "pyroscope_distributor_push_failures",
            "Pushes that did not reach quorum for every series (answered with a 5xx)",
            registry=registry,
        )
        self._query_failures = Counter(
            "pyroscope_querier_ingester_failures",
            "Ingester calls of queries that failed, per ingester",
            ["ingester"],
            registry=registry,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx2.AsyncClient(timeout=self.timeout, limits=limits) as client:
            self._client = client
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                self._client = None
                self._nursery = None

    def ring(self) -> Any:
        """The ring as this node sees it now (rebuilt only when the gossiped description changed)."""
        desc = self.member.ring(self.ring_key)
        if desc is not self._ring_source and desc is not None:
            self._ring.update(desc)
            self._ring_source = desc
        return self._ring

    # -- peer calls ---------------------------------------------------------------------------------

    async def _call(self, instance_id: str, addr: str, path: str, body: bytes) -> bytes:
        """POST ``body`` to ``path`` on the instance at ``addr``; the answer's body, or _Unreachable."""
        client = self._client
        if client is None:
            raise _Unreachable("the cluster backend is not running")
        try:
            with trio.fail_after(self.timeout):
                response = await client.post(f"http://{addr}{path}", content=body, headers=self._headers)
        except trio.TooSlowError:
            raise _Unreachable(f"{instance_id} at {addr}: timed out after {self.timeout:g}s") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise _Unreachable(f"{instance_id} at {addr}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            text = response.text.strip().replace("\n", " ")[:200]
            raise _Unreachable(
                f"{instance_id} at {addr}: HTTP {response.status_code}: {text}",
                client_error=400 <= response.status_code < 500,
                status=response.status_code,
            )
        return response.content

    # -- write path ---------------------------------------------------------------------------------

    async def push(self, tenant: str, writes: Sequence[SeriesWrite]) -> None:
        if not writes:
            return
        now = self.member.clock()
        series = [Series(w.labels, w) for w in writes]
        try:
            plan = plan_push(self.ring(), tenant, series, shard_size=self.shard_size(tenant), now=now)
        except RingError as exc:
            self._push_failures.inc()
            raise BackendError(503, f"cannot place the series: {exc}") from None
        if len(plan.per_instance) == 1 and self.instance_id in plan.per_instance:
            # Everything goes to this instance alone (RF 1 on this node, or a one-node ring): no fan-out.
            try:
                await self.ingester.push_async(tenant, writes)
            except (ValueError, TypeError) as exc:
                raise BackendError(422, str(exc)) from None
            return
        tracker = PushTracker(plan)
        decided = trio.Event()
        nursery = self._nursery
        if nursery is None:
            raise BackendError(503, "the cluster backend is not running")

        async def send(instance_id: str) -> None:
            payload: list[SeriesWrite] = [s.payload for s in plan.batch(instance_id, series)]
            try:
                if instance_id == self.instance_id:
                    try:
                        await self.ingester.push_async(tenant, payload)
                    except (ValueError, TypeError) as exc:
                        raise _Unreachable(str(exc), client_error=True, status=422) from None
                    except Exception as exc:  # e.g. the disk is full: this replica failed
                        raise _Unreachable(f"{instance_id}: {exc}") from None
                else:
                    addr = plan.addresses[instance_id]
                    await self._call(instance_id, addr, PUSH_PATH, encode_push(tenant, payload))
            except _Unreachable as exc:
                self._append_failures.labels(instance_id, "4xx" if exc.client_error else "5xx").inc()
                log.warning("push to ingester %s failed: %s", instance_id, exc)
                tracker.fail(instance_id, exc, client_error=exc.client_error)
                if exc.client_error:
                    statuses[instance_id] = exc.status
            else:
                tracker.ack(instance_id)
            if tracker.decided:
                decided.set()

        statuses: dict[str, int] = {}
        for instance_id in plan.per_instance:
            nursery.start_soon(send, instance_id)
        await decided.wait()
        if tracker.failed:
            self._push_failures.inc()
            if tracker.client_error:
                status = next(iter(statuses.values()), 400)
                raise BackendError(status, tracker.error or "push failed")
            raise BackendError(503, tracker.error or "push failed")

    # -- read path ----------------------------------------------------------------------------------

    async def _fan_out(
        self, tenant: str, path: str, body: bytes, local: Callable[[], Any]
    ) -> list[tuple[Any, Any]]:
        """Ask every ingester that may hold ``tenant``'s data; ``(instance, answer)`` pairs (this
        node's answer through ``local``, the others' as bytes), in instance-id order. Fails when more
        ingesters failed than the READ budget."""
        now = self.member.clock()
        try:
            targets = query_targets(
                self.ring(),
                tenant,
                now=now,
                shard_size=self.shard_size(tenant),
                shuffle_sharding=self.querier_shuffle_sharding,
                lookback=self.query_lookback,
            )
        except RingError as exc:
            raise BackendError(503, f"cannot query the ingesters: {exc}") from None
        instances = sorted(targets.instances, key=lambda i: i.id)
        answers: dict[str, Any] = {}
        errors: dict[str, str] = {}

        async def ask(inst: Any) -> None:
            try:
                if inst.id == self.instance_id:
                    answers[inst.id] = await trio.to_thread.run_sync(local)
                else:
                    answers[inst.id] = await self._call(inst.id, inst.addr, path, body)
            except (_Unreachable, InternalProtocolError) as exc:
                errors[inst.id] = str(exc)
                self._query_failures.labels(inst.id).inc()
                log.warning("query of ingester %s failed: %s", inst.id, exc)

        async with trio.open_nursery() as nursery:
            for inst in instances:
                nursery.start_soon(ask, inst)
        if len(errors) > targets.max_errors:
            first = next(iter(errors.items()))
            raise BackendError(
                503,
                f"only {len(answers)} of {len(instances)} ingesters answered "
                f"({len(errors)} failed, at most {targets.max_errors} may): {first[0]}: {first[1]}",
            )
        return [(i, answers[i.id]) for i in instances if i.id in answers]

    async def query(
        self, tenant: str, query: flameql.Query, start: float, end: float
    ) -> tuple[StackTree, Meta | None]:
        """Two steps, as Pyroscope's querier deduplicates: every ingester says how many samples it
        holds per series and bucket; then each merges, in parallel, the pieces for which it holds the
        most complete replica (querier.assign_replicas), and the querier adds up the merged maps."""
        request = QueryRequest(tenant, str(query), start, end)
        raw = await self._fan_out(
            tenant, SELECT_PATH, encode_query(request), lambda: self.ingester.select(request)
        )
        indexes: list[tuple[str, SeriesIndex]] = []
        metas: list[Mapping[str, Meta]] = []
        holders: dict[str, Any] = {}
        for inst, answer in raw:
            if isinstance(answer, bytes):
                try:
                    answer = decode_select_result(answer)
                except InternalProtocolError as exc:
                    raise BackendError(502, f"bad answer from ingester {inst.id}: {exc}") from None
            indexes.append((inst.id, answer[0]))
            metas.append(answer[1])
            holders[inst.id] = inst
        merged: FlatStacks = {}
        assignment = assign_replicas(indexes)
        for attempt in range(2):
            failed = await self._merge_pieces(request, assignment, holders, merged)
            if not failed:
                break
            if attempt == 1:
                raise BackendError(503, f"ingesters failed to merge their share of the query: {failed}")
            # Give the failed ingesters' pieces to the next most complete replicas.
            indexes = [(iid, index) for iid, index in indexes if iid not in failed]
            wanted = {key for iid in failed for key in assignment[iid]}
            assignment = assign_replicas(
                [(iid, {k: v for k, v in index.items() if k in wanted}) for iid, index in indexes]
            )
        return StackTree(merged), merge_meta(metas).get(query.app_name)

    async def _merge_pieces(
        self,
        request: QueryRequest,
        assignment: Mapping[str, list[tuple[SeriesKey, int]]],
        holders: Mapping[str, Any],
        into: FlatStacks,
    ) -> dict[str, str]:
        """Ask each assigned ingester to merge its pieces; add the answers into ``into``. Returns the
        ingesters that failed, with why."""
        failed: dict[str, str] = {}

        async def merge_one(instance_id: str, pieces: list[tuple[SeriesKey, int]]) -> None:
            merge = MergeRequest(request, tuple(pieces))
            try:
                if instance_id == self.instance_id:
                    stacks = await trio.to_thread.run_sync(self.ingester.merge, merge)
                else:
                    inst = holders[instance_id]
                    body = await self._call(inst.id, inst.addr, MERGE_PATH, encode_merge(merge))
                    stacks = decode_merge_result(body)
            except (_Unreachable, InternalProtocolError) as exc:
                failed[instance_id] = str(exc)
                self._query_failures.labels(instance_id).inc()
                log.warning("merge on ingester %s failed: %s", instance_id, exc)
                return
            merge_stacks(into, stacks)

        async with trio.open_nursery() as nursery:
            for instance_id, pieces in assignment.items():
                nursery.start_soon(merge_one, instance_id, pieces)
        return failed

    async def labels(self, request: LabelsRequest) -> tuple[list[str], dict[str, Meta]]:
        raw = await self._fan_out(
            request.tenant, LABELS_PATH, encode_labels_request(request), lambda: self.ingester.labels(request)
        )
        decoded: list[tuple[list[str], Mapping[str, Meta]]] = []
        for _, answer in raw:
            if isinstance(answer, bytes):
                try:
                    answer = decode_labels_result(answer)
                except InternalProtocolError as exc:
                    raise BackendError(502, f"bad answer from an ingester: {exc}") from None
            decoded.append(answer)
        return merge_union(v for v, _ in decoded), merge_meta(m for _, m in decoded)
