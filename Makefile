# Entry points. `make setup && make test` is all a fresh machine needs; see README.md.
PY := .venv/bin/python
DEVICE ?=
DEVICE_FLAG := $(if $(DEVICE),--device $(DEVICE),)
DATA ?= data
OUT ?= outputs

.PHONY: setup test demo gui bench bench-metrics compare reproduce-bmvos reproduce-emvos reproduce-tbd \
	reproduce-hmmn reproduce-gis verify-bmvos verify-emvos verify-tbd verify-hmmn gpu-check train-sample

setup:
	@bash tools/setup.sh

# pytest exits 5 when it collects nothing; that is reported, not hidden.
test:
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; fi; exit $$rc

demo:
	$(PY) -m vos.demo --out demo_out --trained $(OUT)/train-sample $(DEVICE_FLAG)

# The GIS-RAmap evaluation GUI on a generated sample with seeded weights (offline): http://127.0.0.1:7860/
GUI_SAMPLE := $(OUT)/gis/gui-sample
gui:
	@[ -f $(GUI_SAMPLE)/DAVIS/ImageSets/2017/val.txt ] || \
	  $(PY) -m common.data.synthetic $(GUI_SAMPLE) --videos 2 --frames 8 --height 144 --width 256
	$(PY) -m gis.app --davis $(GUI_SAMPLE)/DAVIS --weights seeded --guide RS4 --output $(OUT)/gis/gui $(DEVICE_FLAG)

bench:
	$(PY) -m vos.bench $(DEVICE_FLAG)

bench-metrics:
	$(PY) -m vos.bench_metrics

# Parity, fast-mode agreement, bench and torchrun on the CUDA device(s), one report: $(OUT)/gpu-check/report.md.
# Without CUDA: one line saying so and a dry run of the plan (exit 0). GPU_CHECK_ARGS: e.g. --steps 'parity-*'.
GPU_CHECK_ARGS ?=
gpu-check:
	$(PY) tools/gpu_check.py --out $(OUT)/gpu-check $(GPU_CHECK_ARGS)

# The four semi-supervised papers on DAVIS 2017 val with their official weights, reusing $(OUT)/<paper>/davis17-val
# (WEIGHTS=seeded: a pipeline check with seeded weights, results kept apart).
compare:
	$(PY) -m vos.compare --davis $(DATA)/DAVIS --results $(OUT) --out $(OUT)/compare/davis17-val \
		$(if $(WEIGHTS),--weights $(WEIGHTS),) $(DEVICE_FLAG)

reproduce-bmvos:
	$(PY) -m bmvos.reproduce --davis $(DATA)/DAVIS --output $(OUT)/bmvos $(DEVICE_FLAG)

reproduce-emvos:
	$(PY) -m emvos.reproduce --davis $(DATA)/DAVIS --output $(OUT)/emvos $(DEVICE_FLAG)

reproduce-tbd:
	$(PY) -m tbd.reproduce --davis $(DATA)/DAVIS --output $(OUT)/tbd $(DEVICE_FLAG)

reproduce-hmmn:
	$(PY) -m hmmn.reproduce --davis $(DATA)/DAVIS --output $(OUT)/hmmn $(DEVICE_FLAG)

reproduce-gis:
	$(PY) -m gis.reproduce --davis $(DATA)/DAVIS --output $(OUT)/gis $(DEVICE_FLAG)

# The authors' released results, scored and compared with ours (README: "How close are we to the authors?").
# Arguments after `--` in VERIFY_ARGS go to <paper>.reproduce when our results must be produced first.
VERIFY_ARGS ?=
verify-bmvos verify-emvos verify-tbd verify-hmmn: verify-%:
	$(PY) -m vos.verify $* --davis $(DATA)/DAVIS --output $(OUT)/$* $(DEVICE_FLAG) $(VERIFY_ARGS)

# Train PAPER (tbd, emvos, bmvos or hmmn) from scratch on generated data for MINUTES of wall-clock time, then score it
# on generated videos it never saw: $(OUT)/train-sample/$(PAPER)/{best.pth,scores.json} (README: "Training on
# generated data"). RESUME=1 continues a run stopped by Ctrl-C (with the same MINUTES).
PAPER ?= tbd
MINUTES ?= 30
train-sample:
	$(PY) -m vos.train_sample $(PAPER) --minutes $(MINUTES) --out $(OUT)/train-sample $(DEVICE_FLAG) \
	  $(if $(RESUME),--resume)
