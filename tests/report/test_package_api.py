"""The package's builders stay functions however their submodules are imported."""

import importlib
import types

import triage.report as report


def test_builders_are_functions_after_submodule_imports():
    importlib.import_module("triage.report.from_case")
    importlib.import_module("triage.report.from_scan")
    assert isinstance(report.from_case, types.FunctionType)
    assert isinstance(report.from_scan, types.FunctionType)
