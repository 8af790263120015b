"""Initialization options: bad values are reported and replaced by defaults, never fatal."""

from __future__ import annotations

from vmd.options import parse_options


def test_missing_options_give_every_default() -> None:
    options, warnings = parse_options(None)
    assert (options.mode, options.include, options.timeout_ms) == ("serve", ["**/*.vmd.py"], 30000)
    assert warnings == []


def test_camel_case_options_are_applied() -> None:
    options, warnings = parse_options({"mode": "build", "timeoutMs": 500, "include": ["a/*.py"]})
    assert (options.mode, options.timeout_ms, options.include) == ("build", 500, ["a/*.py"])
    assert warnings == []


def test_a_bad_option_is_named_in_a_warning_and_the_rest_still_apply() -> None:
    options, warnings = parse_options({"timeoutMs": "fast", "mode": "build"})
    assert options.timeout_ms == 30000 and options.mode == "build"
    assert len(warnings) == 1 and "timeoutMs" in warnings[0]


def test_nonsense_values_fall_back_to_defaults() -> None:
    options, warnings = parse_options({"timeoutMs": -5, "include": [], "maxWorkers": 0})
    assert (options.timeout_ms, options.include, options.max_workers) == (
        30000,
        ["**/*.vmd.py"],
        8,
    )
    assert len(warnings) == 3


def test_options_that_are_not_an_object_are_reported() -> None:
    options, warnings = parse_options(["serve"])
    assert options.mode == "serve" and "must be an object" in warnings[0]


def test_unknown_options_are_ignored_for_forward_compatibility() -> None:
    assert parse_options({"someFutureOption": 1})[1] == []


def test_an_include_glob_that_cannot_match_is_named_and_dropped() -> None:
    options, warnings = parse_options({"include": ["src/[z-a].vmd.py", "src/*.vmd.py"]})
    assert options.include == ["src/*.vmd.py"]
    assert warnings == [
        "initializationOptions.include: invalid glob 'src/[z-a].vmd.py': "
        "bad character range z-a; ignoring it"
    ]


def test_an_include_of_only_broken_globs_falls_back_to_the_default() -> None:
    options, warnings = parse_options({"include": ["[z-a]"]})
    assert options.include == ["**/*.vmd.py"]
    assert warnings[-1] == "initializationOptions.include has no valid glob; using ['**/*.vmd.py']"
