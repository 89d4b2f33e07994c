"""bench.toml: validated before anything runs; every mistake named with where it is."""

import pytest

from conftest import ROOT
from harness.cli import main
from harness.config import load_config, parse_config
from harness.errors import ConfigError

BASE = {
    "datasets": {"sci": "local:datasets/beir/scifact"},
    "rankers": {"bm25": {"kind": "bm25", "k1": 0.9}},
    "suites": {"s": {"rankers": ["bm25"], "datasets": ["sci"]}},
}


def parse(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in changes.items():
        raw[key] = value
    return parse_config(raw, ROOT / "test.toml")


def test_the_project_config_is_valid(config):
    assert {"smoke", "quick", "beir", "dl"} <= set(config.suites)
    assert config.ranker("bm25s").params.backend == "bm25s"           # extends bm25, overrides backend
    assert config.ranker("bm25s").params.k1 == 0.9
    assert config.ranker("minilm-rerank-bm25run").first_stage == "bm25-run"
    assert [s.name for s in config.chain("oracle-rerank-bm25s")] == ["oracle-rerank-bm25s", "bm25s"]


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r'test\.toml: unknown key "suite" \(did you mean "suites"\?\)'):
        parse(suite={})


def test_unknown_ranker_kind_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r'\[rankers\.x\]: unknown ranker kind "bm52" \(did you mean "bm25"\?\)'):
        parse(rankers={"x": {"kind": "bm52"}})


def test_unknown_ranker_parameter_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r'\[rankers\.x\]: unknown parameter "kl" \(did you mean "k1"\?\)'):
        parse(rankers={"x": {"kind": "bm25", "kl": 1.2}})


def test_parameter_types_and_choices():
    with pytest.raises(ConfigError, match=r"\[rankers\.x\]: k1 must be a number, found 'high'"):
        parse(rankers={"x": {"kind": "bm25", "k1": "high"}})
    with pytest.raises(ConfigError, match=r"backend = 'pyserin' is not one of 'pyserini', 'bm25s' \(did you mean \"pyserini\"\?\)"):
        parse(rankers={"x": {"kind": "bm25", "backend": "pyserin"}})
    with pytest.raises(ConfigError, match=r"batch_size must be an integer, found 8.5"):
        parse(rankers={"x": {"kind": "bi-encoder", "batch_size": 8.5}})


def test_bad_measure_string_says_where():
    with pytest.raises(ConfigError, match=r"\[suites\.s\] measures: cannot parse measure 'nDGC@10'.*did you mean \"nDCG\""):
        parse(suites={"s": {"rankers": ["bm25"], "datasets": ["sci"], "measures": ["nDGC@10"]}})
    with pytest.raises(ConfigError, match=r"cannot parse measure 'RR\(rel=\)@10'"):
        parse(measures={"m": ["RR(rel=)@10"]})
    with pytest.raises(ConfigError, match=r"write measure 'MRR@10' as ir_measures prints it: 'RR@10'"):
        parse(measures={"m": ["MRR@10"]})
    with pytest.raises(ConfigError, match=r"cannot parse measure 'ndcg@10'.*did you mean \"nDCG\""):
        parse(measures={"m": ["ndcg@10"]})


def test_any_ir_measures_string_is_accepted():
    c = parse(suites={"s": {"rankers": ["bm25"], "datasets": ["sci"],
                            "extra_measures": ["P@10", "Success@10", "RR(rel=2)@10", "nDCG@1000"]}})
    assert c.suites["s"].extra_measures == ("P@10", "Success@10", "RR(rel=2)@10", "nDCG@1000")


def test_references_must_exist():
    with pytest.raises(ConfigError, match=r'\[suites\.s\]: unknown ranker "bm26" \(did you mean "bm25"\?\)'):
        parse(suites={"s": {"rankers": ["bm26"], "datasets": ["sci"]}})
    with pytest.raises(ConfigError, match=r'unknown dataset "scifact"'):
        parse(suites={"s": {"rankers": ["bm25"], "datasets": ["scifact"]}})
    with pytest.raises(ConfigError, match=r'unknown first_stage ranker "bm"'):
        parse(rankers={"bm25": {"kind": "bm25"}, "r": {"kind": "random", "first_stage": "bm"}})
    with pytest.raises(ConfigError, match=r"baseline ranker .* \"oracle\""):
        parse(suites={"s": {"rankers": ["bm25"], "datasets": ["sci"], "baseline": "oracle"}})


def test_first_stage_rules():
    with pytest.raises(ConfigError, match="depth needs a first_stage"):
        parse(rankers={"x": {"kind": "random", "depth": 10}})
    with pytest.raises(ConfigError, match="kind 'run' cannot rerank"):
        parse(rankers={"bm25": {"kind": "bm25"}, "x": {"kind": "run", "run": "bm25", "first_stage": "bm25"}})
    with pytest.raises(ConfigError, match="form a cycle .*: a -> b -> a"):
        parse(rankers={"a": {"kind": "random", "first_stage": "b"}, "b": {"kind": "random", "first_stage": "a"}})
    with pytest.raises(ConfigError, match="depth must be a positive integer"):
        parse(rankers={"bm25": {"kind": "bm25"}, "x": {"kind": "random", "first_stage": "bm25", "depth": 0}})
    c = parse(rankers={"bm25": {"kind": "bm25"}, "x": {"kind": "random", "first_stage": "bm25"}})
    assert c.rankers["x"].depth == 100


def test_extends_rules():
    with pytest.raises(ConfigError, match="extends forms a cycle"):
        parse(rankers={"a": {"extends": "b"}, "b": {"extends": "a"}})
    with pytest.raises(ConfigError, match=r'unknown ranker to extend "bm2"'):
        parse(rankers={"a": {"extends": "bm2"}})


def test_names_must_be_file_safe():
    with pytest.raises(ConfigError, match="name 'a>b' may use letters"):
        parse(rankers={"a>b": {"kind": "bm25"}})
    with pytest.raises(ConfigError, match="may not contain '__'"):
        parse(datasets={"a__b": "local:x"})


def test_dataset_specs():
    with pytest.raises(ConfigError, match=r'must be "local:PATH" or "irds:ID"'):
        parse(datasets={"x": "beir/scifact"})
    with pytest.raises(ConfigError, match="seed_from only applies to irds"):
        parse(datasets={"x": {"source": "local:datasets/vaswani", "seed_from": "datasets/vaswani"}})
    with pytest.raises(ConfigError, match=r'unknown key "splt" \(did you mean "split"\?\)'):
        parse(datasets={"x": {"source": "local:datasets/vaswani", "splt": "dev"}})


def test_a_run_ranker_needs_exactly_one_source():
    from harness.runner import Runner

    c = parse(rankers={"r": {"kind": "run"}}, suites={})
    with pytest.raises(ConfigError, match="needs exactly one of run"):
        Runner(c, ROOT / "reports").instance("r")


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[rankers.bm25\nkind = 'bm25'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: .*line 1"):
        load_config(bad)


def test_validate_command_reports_errors_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bench.toml"
    bad.write_text('[rankers.x]\nkind = "bi-encoder"\nmodle = "m"\n')
    assert main(["validate", "--config", str(bad)]) == 2
    assert 'unknown parameter "modle" (did you mean "model"?)' in capsys.readouterr().err


def test_comparison_tables_and_their_bars():
    rankers = {"bm25": {"kind": "bm25", "k1": 0.9}, "r": {"kind": "random", "first_stage": "bm25"}}
    ok = parse(rankers=rankers, suites={"s": {"rankers": ["bm25", "r"], "datasets": ["sci"],
                                              "variants": {"r": "bm25"}, "bars": {"speedup": 10}}})
    s = ok.suite("s")
    assert s.variants == {"r": "bm25"} and s.bars["speedup"] == 10 and s.bars["variant_size"] == 0.30
    with pytest.raises(ConfigError, match=r'\[suites\.s\] variants: unknown source ranker .*"bm24"'):
        parse(rankers=rankers, suites={"s": {"rankers": ["bm25", "r"], "datasets": ["sci"], "variants": {"r": "bm24"}}})
    with pytest.raises(ConfigError, match=r'\[suites\.s\] bars: unknown bar "sped" \(did you mean "speedup"\?\)'):
        parse(rankers=rankers, suites={"s": {"rankers": ["bm25", "r"], "datasets": ["sci"], "bars": {"sped": 2}}})
    with pytest.raises(ConfigError, match=r"bars\.kept: must be a positive number, found -1"):
        parse(rankers=rankers, suites={"s": {"rankers": ["bm25", "r"], "datasets": ["sci"], "bars": {"kept": -1}}})


def test_the_readmes_bench_toml_example_is_valid_and_says_what_bench_toml_says(config):
    """The Concepts section's example loads as a config of its own, and each ranker, dataset and
    the quick suite it shows are defined in bench.toml as it shows them (the example cannot drift)."""
    import dataclasses
    import re
    import tomllib

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### bench.toml\n"):]
    block = re.search(r"```toml\n(.*?)```", section, flags=re.S).group(1)
    example = parse_config(tomllib.loads(block), ROOT / "README-example.toml")
    for name, spec in example.rankers.items():
        real = config.ranker(name)
        assert (spec.kind, spec.params, spec.first_stage, spec.depth) == \
            (real.kind, real.params, real.first_stage, real.depth), name
    for name, spec in example.datasets.items():       # descriptions are prose: all else must agree
        assert dataclasses.replace(spec, description=config.datasets[name].description) == config.datasets[name], name
    quick, real = example.suite("quick"), config.suite("quick")
    assert set(quick.rankers) <= set(real.rankers) and quick.datasets == real.datasets
    assert quick.baseline == real.baseline
