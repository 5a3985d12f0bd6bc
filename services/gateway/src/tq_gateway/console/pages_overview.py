"""``/ui/``: the overview when signed in (what ``GET /v1/overview`` answers, for people), else the sign-in form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import falcon

from tq_gateway.console.gate import Access
from tq_gateway.console.pages_session import sign_in_page
from tq_gateway.console.render import Renderer
from tqcore.usecases.overview import LAG_MINUTES, Minute, SystemOverview, age_s
from tqcore.usecases.overview import Overview as State

#: A scheduler whose last pass is older than this is shown as stalled (passes are a second apart when healthy).
STALLED_PASS_S = 60.0
#: The throughput chart's size in SVG user units: one bar per minute.
CHART_W, CHART_H, BAR_GAP = 300, 80, 4
#: Minutes the headline throughput covers.
RECENT_MINUTES = 5


class Overview:
    """``GET /ui/``: the overview through the same use case as ``GET /v1/overview``, or the sign-in form."""

    access = Access.OPTIONAL

    def __init__(self, renderer: Renderer, overview: SystemOverview) -> None:
        self._renderer = renderer
        self._overview = overview

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.context.principal is None:
            sign_in_page(self._renderer, req, resp)
            return
        state = self._overview.read(req.context.principal)
        self._renderer.render(req, resp, "overview.html", view=OverviewView.of(state))


@dataclass(frozen=True)
class Bar:
    """One minute's bar in the throughput chart (SVG coordinates, no inline style: the CSP forbids it)."""

    x: int
    width: int
    ok_y: float
    ok_h: float
    failed_y: float
    failed_h: float
    label: str


@dataclass(frozen=True)
class OverviewView:
    """What ``overview.html`` shows, formatted."""

    state: State
    #: The minutes the headline throughput covers.
    recent_minutes: int
    recent_succeeded: int
    recent_failed: int
    bars: tuple[Bar, ...]
    lag: str
    last_pass: str
    stalled: bool
    chart_label: str
    #: The chart's first minute (its last is the minute under way).
    axis_from: str

    @classmethod
    def of(cls, state: State) -> OverviewView:
        """The view of an overview."""
        recent = state.minutes[-RECENT_MINUTES:]
        succeeded, failed = sum(m.succeeded for m in recent), sum(m.failed for m in recent)
        pass_age = age_s(state.scheduler.last_pass_at, state.at)
        lag_s = state.scheduler.lag_s
        return cls(
            state=state,
            recent_minutes=len(recent),
            recent_succeeded=succeeded,
            recent_failed=failed,
            bars=_bars(state.minutes),
            lag=f"none fired in the last {LAG_MINUTES} minutes" if lag_s is None else duration(lag_s),
            last_pass="never reported" if pass_age is None else f"{duration(pass_age)} ago",
            stalled=state.replicas.get("scheduler", 0) == 0 or pass_age is None or pass_age > STALLED_PASS_S,
            chart_label=f"Attempts finished per minute over the last {len(state.minutes)} minutes: "
            f"{sum(m.succeeded for m in state.minutes)} succeeded, {sum(m.failed for m in state.minutes)} failed",
            axis_from=f"{state.minutes[0].start:%H:%M}Z" if state.minutes else "",
        )

    def age(self, since: datetime | None) -> str:
        """How long before the overview ``since`` was, as the page shows it (``—`` for none)."""
        return "—" if since is None else duration(age_s(since, self.state.at) or 0.0)


def _bars(minutes: tuple[Minute, ...]) -> tuple[Bar, ...]:
    """Stacked bars, succeeded below failed, scaled to the busiest minute."""
    peak = max((m.succeeded + m.failed for m in minutes), default=0) or 1
    width = CHART_W // max(len(minutes), 1)
    bars = []
    for n, minute in enumerate(minutes):
        ok_h = CHART_H * minute.succeeded / peak
        failed_h = CHART_H * minute.failed / peak
        bars.append(
            Bar(
                x=n * width,
                width=width - BAR_GAP,
                ok_y=round(CHART_H - ok_h, 2),
                ok_h=round(ok_h, 2),
                failed_y=round(CHART_H - ok_h - failed_h, 2),
                failed_h=round(failed_h, 2),
                label=f"{minute.start:%H:%M}Z: {minute.succeeded} succeeded, {minute.failed} failed",
            )
        )
    return tuple(bars)


def duration(seconds: float) -> str:
    """``0.25 s``, ``12 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
