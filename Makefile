PY ?= python

.PHONY: install test lint format bench assets

install:
	pip install -c constraints.txt -e '.[dev]'

test:
	$(PY) -m pytest

lint:
	ruff check swift tests scripts benchmarks

format:
	ruff format swift tests scripts benchmarks

bench:
	$(PY) benchmarks/bench_encode.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_startup.py
	$(PY) benchmarks/bench_dpo.py
	$(PY) benchmarks/bench_mm_packing.py
	$(PY) benchmarks/bench_quant.py
	$(PY) benchmarks/serve_load.py

assets:
	$(PY) scripts/build_tokenizer.py
	$(PY) scripts/gen_hf_flags.py
