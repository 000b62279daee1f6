"""`failover-router simulate`: a timeline of requests and faults, played on the real engine in virtual time."""

from .run import RequestResult, Simulation, Transition, WindowCalls, simulate
from .timeline import Fault, ModelTimeline, Request, Requests, Timeline, TimelineError, Window
from .timeline_file import load_timeline, parse_timeline

__all__ = [
    "Fault",
    "ModelTimeline",
    "Request",
    "RequestResult",
    "Requests",
    "Simulation",
    "Timeline",
    "TimelineError",
    "Transition",
    "Window",
    "WindowCalls",
    "load_timeline",
    "parse_timeline",
    "simulate",
]
