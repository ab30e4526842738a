"""`make bench`: run every benchmark and print its figures (markdown, for BENCHMARKS.md)."""

import argparse

from bench import (big_picture, colour_eval, conditional_eval, first_user, style_speed, crawl_throughput, dead_host, detect_eval, embed_speed, eval_time, flow_overhead,
                   folder_eval, ingest_throughput, learner_eval, neardup, process_throughput, review_speed, tag_learner)

BENCHES = {
    "ingest": ingest_throughput.main,
    "crawl": crawl_throughput.main,
    "neardup": lambda: neardup.main([]),
    "process": process_throughput.main,
    "detect": lambda: detect_eval.main([]),
    "review": lambda: review_speed.main([]),
    "dead_host": dead_host.main,
    "big_picture": lambda: big_picture.main([]),
    "eval_time": eval_time.main,
    "flow_overhead": flow_overhead.main,
    "embed_speed": lambda: embed_speed.main([]),
    "tag_learner": lambda: tag_learner.main([]),
    "folder_eval": lambda: folder_eval.main([]),
    "first_user": lambda: first_user.main([]),
    "learner_eval": lambda: learner_eval.main([]),
    "colour_eval": lambda: colour_eval.main([]),
    "style_speed": lambda: style_speed.main([]),
    "conditional_eval": lambda: conditional_eval.main([]),
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="headshot benchmarks. Example: python -m bench ingest")
    ap.add_argument("names", nargs="*", help=f"which to run: {', '.join(BENCHES)} (default: all)")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(BENCHES)}")
    for name in args.names or BENCHES:
        BENCHES[name]()
