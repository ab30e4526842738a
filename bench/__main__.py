"""`make bench`: run every benchmark and print its figures (markdown, for BENCHMARKS.md).

Each benchmark's module is imported when it is about to run, not all of them first: the ones
that train or embed import torch, and a process with torch loaded forks its workers more slowly
than `headshot ingest` or `headshot process` ever do, which would weigh on their figures."""

import argparse
import importlib

# name -> (module in bench/, whether its main takes an argv list)
BENCHES = {
    "ingest": ("ingest_throughput", False),
    "crawl": ("crawl_throughput", False),
    "neardup": ("neardup", True),
    "process": ("process_throughput", False),
    "detect": ("detect_eval", True),
    "review": ("review_speed", True),
    "dead_host": ("dead_host", False),
    "big_picture": ("big_picture", True),
    "eval_time": ("eval_time", False),
    "flow_overhead": ("flow_overhead", False),
    "embed_speed": ("embed_speed", True),
    "tag_learner": ("tag_learner", True),
    "folder_eval": ("folder_eval", True),
    "first_user": ("first_user", True),
    "learner_eval": ("learner_eval", True),
    "colour_eval": ("colour_eval", True),
    "style_speed": ("style_speed", True),
    "conditional_eval": ("conditional_eval", True),
}


def run(name: str):
    module, takes_argv = BENCHES[name]
    main = importlib.import_module(f"bench.{module}").main
    return main([]) if takes_argv else main()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="headshot benchmarks. Example: python -m bench ingest")
    ap.add_argument("names", nargs="*", help=f"which to run: {', '.join(BENCHES)} (default: all)")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(BENCHES)}")
    for name in args.names or BENCHES:
        run(name)
