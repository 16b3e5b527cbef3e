# captchalab: `make demo` and `make test` work on a fresh machine (they install first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/demo

.PHONY: install demo test test-fast lint clean bench-families bench-few-labels bench-audit bench-deploy \
	base-model fonts

$(BIN)/captchalab: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,serve,dev]'
	touch $@

install: $(BIN)/captchalab

demo: install
	$(BIN)/captchalab generate rings --count 2000 --out $(DEMO)/train --seed 1
	$(BIN)/captchalab generate rings --count 1000 --out $(DEMO)/test --seed 2
	$(BIN)/captchalab train $(DEMO)/train --out $(DEMO)/model --max-minutes 8 --overwrite
	$(BIN)/captchalab evaluate $(DEMO)/model/model.safetensors $(DEMO)/test

V2 := ../shared/datasets/captcha_v2/images

FONT_PACKAGES := fonts-liberation2 fonts-freefont-ttf fonts-urw-base35
fonts:  # the Debian fonts the synthetic universe draws with (beside matplotlib's DejaVu)
	@dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" -ne 0 ] && command -v sudo || true ); \
		$$SUDO apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(FONT_PACKAGES); }

# the packaged base model from scratch: hours on 2 CPU cores (BASE_MINUTES); on a GPU the whole
# schedule, about 21 minutes with 16 cores drawing the images
BASE_MINUTES ?= 100
BASE_DEVICE ?= auto
base-model: install fonts
	@start=$$(date +%s); \
	$(BIN)/captchalab base-model --out runs/base-model --device $(BASE_DEVICE) --quiet --resume \
		$$( [ "$(BASE_DEVICE)" = cpu ] || ! $(BIN)/python -c 'import torch,sys; \
		sys.exit(not torch.cuda.is_available())' && echo --minutes $(BASE_MINUTES) ) \
		--install && \
	echo "make base-model took $$(( ($$(date +%s) - start) / 60 )) min"

bench-families: install  # every family on captcha_v2 and on rings (BENCHMARKS.md); about 90 min
	$(BIN)/captchalab compare $(V2) --out runs/compare_v2 --max-minutes 15 --quiet --overwrite
	$(BIN)/captchalab generate rings --count 3000 --out runs/rings3000 --seed 21 --quiet
	$(BIN)/captchalab compare runs/rings3000 --out runs/compare_rings --val-split 0.3334 \
		--epochs 15 --models slice,crnn,heatmap,multihead-spatial \
		--slices 54,110,170,215,262 --quiet --overwrite

bench-few-labels: install  # captcha_v2 with 100 labels, from scratch and pretrained; ~35 min
	$(BIN)/captchalab audit $(V2) --sizes 100 --seeds 3 --max-minutes 6 --quiet --overwrite \
		--out runs/few_labels/scratch
	$(BIN)/captchalab audit $(V2) --sizes 100 --seeds 3 --max-minutes 6 --quiet --overwrite \
		--pretrain benchmarks/schemes/lookalike_v2.toml --out runs/few_labels/lookalike

bench-audit: install  # the default audit of captcha_v2 (BENCHMARKS.md); about 27 min
	$(BIN)/captchalab audit $(V2) --quiet --overwrite --out runs/audit_v2

DDDDOCR := benchmarks/.venv-ddddocr/bin/python

$(DDDDOCR):  # ddddocr only for comparison, in its own venv; never a captchalab dependency
	$(PYTHON) -m venv benchmarks/.venv-ddddocr
	benchmarks/.venv-ddddocr/bin/pip install --quiet ddddocr==1.6.1

bench-deploy: install $(DDDDOCR)  # runtimes side by side, then the service under load; ~10 min
	test -f runs/compare_v2/crnn/model.safetensors || $(MAKE) bench-families
	$(BIN)/python benchmarks/runtime_speed.py --model runs/compare_v2/crnn/model.safetensors \
		--data $(V2) --out benchmarks/runs/runtime --ddddocr-python $(DDDDOCR)
	cp benchmarks/runs/runtime/runtime.json benchmarks/results_runtime.json
	$(BIN)/python benchmarks/service_load.py --model benchmarks/runs/runtime/model.onnx \
		--data $(V2) --seconds 60 --connections 1,4,8,16 \
		--out benchmarks/results_service_load.json

test: install
	$(BIN)/python -m pytest -q

test-fast: install  # units and contract tests, no training runs, servers or browsers
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
