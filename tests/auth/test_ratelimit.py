"""Per-client rate limits (fhirhub.auth.ratelimit): a token bucket per caller, refilled
evenly, with the wait given as ``Retry-After`` (RFC 9110 §10.2.3,
https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3; RFC 6585 §4 for 429).

Backend clients are the callers limited here (SMART Backend Services,
https://hl7.org/fhir/smart-app-launch/backend-services.html). Time is an injected clock,
so nothing here waits.
"""

from __future__ import annotations

import pytest

from fhirhub.auth.ratelimit import RateLimiter, retry_after


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def spend(limiter: RateLimiter, key: str, per_minute: int, times: int) -> list[float | None]:
    return [limiter.take(key, per_minute) for _ in range(times)]


def test_burst_up_to_the_limit_is_allowed_then_refused(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    assert spend(limiter, "app", 60, 60) == [None] * 60
    assert limiter.take("app", 60) is not None


def test_refused_request_says_how_long_until_one_is_available(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    spend(limiter, "app", 60, 60)
    assert limiter.take("app", 60) == pytest.approx(1.0)  # 60 a minute: one a second
    limiter = RateLimiter(clock=clock)
    spend(limiter, "slow", 6, 6)
    assert limiter.take("slow", 6) == pytest.approx(10.0)


def test_bucket_refills_evenly_over_time(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    spend(limiter, "app", 60, 60)
    clock.advance(0.5)
    assert limiter.take("app", 60) == pytest.approx(0.5)  # half a request back
    clock.advance(0.5)
    assert limiter.take("app", 60) is None
    assert limiter.take("app", 60) is not None
    clock.advance(10)
    assert spend(limiter, "app", 60, 10) == [None] * 10
    assert limiter.take("app", 60) is not None


def test_refill_never_exceeds_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    spend(limiter, "app", 30, 1)
    clock.advance(3600)
    assert spend(limiter, "app", 30, 30) == [None] * 30
    assert limiter.take("app", 30) is not None


def test_refused_requests_do_not_push_the_wait_back(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    spend(limiter, "app", 60, 60)
    assert all(w is not None for w in spend(limiter, "app", 60, 5))
    clock.advance(1.0)
    assert limiter.take("app", 60) is None


def test_zero_means_no_limit(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    assert spend(limiter, "app", 0, 10_000) == [None] * 10_000
    assert limiter.take("app", -1) is None


def test_each_key_has_its_own_bucket(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    spend(limiter, "greedy", 5, 5)
    assert limiter.take("greedy", 5) is not None
    assert spend(limiter, "polite", 5, 5) == [None] * 5


def test_each_worker_gets_its_share_of_the_limit(clock: Clock) -> None:
    limiter = RateLimiter(workers=4, clock=clock)
    assert spend(limiter, "app", 120, 30) == [None] * 30
    wait = limiter.take("app", 120)
    assert wait == pytest.approx(2.0)  # 30 a minute in this worker: one every 2 s


def test_a_worker_share_is_at_least_one_request(clock: Clock) -> None:
    limiter = RateLimiter(workers=8, clock=clock)
    assert limiter.take("app", 2) is None
    assert limiter.take("app", 2) is not None


def test_workers_below_one_count_as_one(clock: Clock) -> None:
    limiter = RateLimiter(workers=0, clock=clock)
    assert limiter.workers == 1
    assert spend(limiter, "app", 3, 3) == [None] * 3


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.01, "1"), (1.0, "1"),
                                                 (1.2, "2"), (59.5, "60"), (60.0, "60")])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(seconds: float,
                                                                  header: str) -> None:
    assert retry_after(seconds) == header
