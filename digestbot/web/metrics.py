"""`GET /metrics`: Prometheus metrics of the installation, read from its database at each scrape.

The numbers live in the database, shared by the processes that change them (`digestbot run`, `run
--once` from cron, the command line, this web process), so they are not counted in this process's memory
with prometheus_client's Counter and Gauge: a custom collector reads them when Prometheus scrapes, and
every scrape sees what every process did. The registry holds this collector alone (no process or
platform metrics of the web process, which say nothing about the bot).

    digestbot_database_up                         1 when the database answered this scrape, else 0 (and
                                                  nothing else is reported)
    digestbot_papers_total                        papers stored
    digestbot_matches_total                       matches recorded (a paper two subscriptions match: 2)
    digestbot_source_up{source}                   1 when the source's latest poll worked, 0 when it failed
    digestbot_source_last_poll_timestamp_seconds{source}     the latest poll, successful or not
    digestbot_source_last_success_timestamp_seconds{source}  the latest successful poll
    digestbot_source_listings_total{source}       listings seen by its successful polls (a paper listed
                                                  on two days counts twice)
    digestbot_source_polls_total{source}          its polls, successful or not
    digestbot_source_failed_polls_total{source}   of them, the failed ones
    digestbot_source_last_new_papers{source}      new papers in its latest successful poll
    digestbot_digests_sent_total{channel}         digests sent
    digestbot_digests_failed{channel}             digests failed for good (`retry --failed` lowers it)
    digestbot_ledger_backlog_digests{channel}     digests pending or being sent
    digestbot_ledger_waiting_papers{channel}      matched papers not sent yet (waiting for their period's
                                                  digest or in a pending one)
    digestbot_ledger_oldest_pending_age_seconds{channel}     how long the oldest of those has waited
    digestbot_daemon_heartbeat_age_seconds        the newest daemon heartbeat's age (absent: no daemon)

Sources are those of the config (a source removed from it is no longer reported); channels are the
ledger's (email, slack, slack_webhook). No subscription, address or Slack channel name is a label.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import StoreError
from ..store import DeliveryStatus, Ledger
from .site import Site

log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """The installation's numbers, read from its database when collected."""

    def __init__(self, site: Site):
        self.site = site

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("digestbot_database_up", "1 when the database answered this scrape")
        try:
            metrics = list(self._read())
        except StoreError as exc:
            log.warning("/metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> Iterable[Metric]:
        store, at = self.site.store, datetime.now(UTC)
        store.last_successful_poll()  # StoreError when a SQLite file has gone (reading would make a new one)
        yield CounterMetricFamily("digestbot_papers", "Papers stored", value=store.count_papers())
        yield CounterMetricFamily("digestbot_matches", "Matches recorded", value=store.count_matches())
        yield from self._sources(at)
        yield from self._ledger(at)
        beats = store.heartbeats()
        age = GaugeMetricFamily("digestbot_daemon_heartbeat_age_seconds",
                                "Age of the newest `digestbot run` heartbeat (absent: no daemon)")
        if beats:
            age.add_metric([], (at - beats[0].beat_at).total_seconds())
        yield age

    def _sources(self, at: datetime) -> Iterable[Metric]:
        states = self.site.store.source_states()
        labels = ["source"]
        up = GaugeMetricFamily("digestbot_source_up", "1 when the source's latest poll worked", labels=labels)
        polled = GaugeMetricFamily("digestbot_source_last_poll_timestamp_seconds",
                                   "Unix time of the source's latest poll", labels=labels)
        success = GaugeMetricFamily("digestbot_source_last_success_timestamp_seconds",
                                    "Unix time of the source's latest successful poll", labels=labels)
        listings = CounterMetricFamily("digestbot_source_listings", "Listings seen by the source's successful polls",
                                       labels=labels)
        polls = CounterMetricFamily("digestbot_source_polls", "Polls of the source", labels=labels)
        failed = CounterMetricFamily("digestbot_source_failed_polls", "Polls of the source that failed", labels=labels)
        new = GaugeMetricFamily("digestbot_source_last_new_papers", "New papers in the source's latest successful "
                                "poll", labels=labels)
        for options in self.site.config.sources:
            st, name = states.get(options.name), [options.name]
            if st is None:  # never polled: nothing to say yet, not a failure
                continue
            up.add_metric(name, 0 if st.failing else 1)
            if st.last_poll:
                polled.add_metric(name, st.last_poll.timestamp())
            if st.last_success:
                success.add_metric(name, st.last_success.timestamp())
            listings.add_metric(name, st.papers_seen)
            polls.add_metric(name, st.polls)
            failed.add_metric(name, st.failed_polls)
            new.add_metric(name, st.last_new)
        yield from (up, polled, success, listings, polls, failed, new)

    def _ledger(self, at: datetime) -> Iterable[Metric]:
        store = self.site.store
        counts, papers = Ledger(store).counts(), store.delivery_counts()
        labels = ["channel"]
        sent = CounterMetricFamily("digestbot_digests_sent", "Digests sent", labels=labels)
        failed = GaugeMetricFamily("digestbot_digests_failed", "Digests failed for good", labels=labels)
        backlog = GaugeMetricFamily("digestbot_ledger_backlog_digests", "Digests pending or being sent",
                                    labels=labels)
        waiting = GaugeMetricFamily("digestbot_ledger_waiting_papers", "Matched papers not sent yet", labels=labels)
        oldest = GaugeMetricFamily("digestbot_ledger_oldest_pending_age_seconds",
                                   "Age of the oldest digest or matched paper waiting to be sent", labels=labels)
        for channel, c in sorted(counts.items()):
            sent.add_metric([channel], c.sent)
            failed.add_metric([channel], c.failed)
            backlog.add_metric([channel], c.pending + c.sending)
            waiting.add_metric([channel], papers.get((channel, DeliveryStatus.PENDING), 0))
            oldest.add_metric([channel], (at - c.oldest_pending).total_seconds() if c.oldest_pending else 0)
        yield from (sent, failed, backlog, waiting, oldest)


def routes(site: Site) -> list[Route]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(site))

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
