"""The [flow] table: which task runner the flows use and where a Dask cluster is; every bad
value is one line naming the key."""

import json

import pytest

from pipelines.config import ConfigError, FlowSection, HeadshotConfig
from pipelines.config_init import init_text


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        HeadshotConfig.from_toml(text)
    return caught.value.problems


def test_the_defaults_run_on_threads_with_a_local_two_worker_cluster_for_dask():
    assert HeadshotConfig().flow == FlowSection("threads", "", 2)
    assert HeadshotConfig.from_toml(init_text()).flow == FlowSection()


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "tls://sched.example.org:8786", "127.0.0.1:8786",
                                     "tcp://[::1]:8786", ""])
def test_a_flow_table_round_trips(address):
    cfg = HeadshotConfig.from_toml(f'[flow]\ntask_runner = "dask"\ndask_address = "{address}"\ndask_workers = 3\n')
    assert cfg.flow == FlowSection("dask", address, 3)
    assert HeadshotConfig.from_toml(cfg.to_toml()) == cfg


@pytest.mark.parametrize("table, line", [
    ('task_runner = "ray"', 'flow.task_runner = "ray": must be one of threads|dask'),
    ('dask_address = "http://10.0.0.5"', 'flow.dask_address = "http://10.0.0.5": not a Dask scheduler address'),
    ('dask_address = "tcp://10.0.0.5:99999"', 'flow.dask_address = "tcp://10.0.0.5:99999": not a Dask scheduler'),
    ("dask_workers = 0", "flow.dask_workers = 0: out of range: must be at least 1"),
    ('dask_workers = "two"', 'flow.dask_workers = "two": expected a whole number'),
    ('runner = "dask"', "flow.runner: unknown key; did you mean flow.task_runner?"),
])
def test_each_bad_value_is_one_line_naming_the_key(table, line):
    problems = problems_of(f"[flow]\n{table}\n")
    assert len(problems) == 1 and problems[0].startswith(line), problems


def test_set_pairs_reach_the_flow_table():
    cfg = HeadshotConfig().with_sets(["task_runner=dask", "dask_workers=4"], table="flow")
    assert cfg.flow == FlowSection("dask", "", 4)


def test_a_flow_parameter_comes_back_from_its_json_form():
    cfg = HeadshotConfig.from_toml('home = "ws"\n[flow]\ntask_runner = "dask"\n[schedule]\nbuild = "0 3 * * *"\n'
                                   '[process.filters]\nmin_published = "2015-05-01"\n')
    assert HeadshotConfig.of(json.loads(json.dumps(cfg.as_dict()))) == cfg  # what a deployment's parameters hold
    assert HeadshotConfig.of(cfg) is cfg and HeadshotConfig.of(None) == HeadshotConfig()
    with pytest.raises(ConfigError, match="flow.task_runner"):
        HeadshotConfig.of({"flow": {"task_runner": "ray"}})
