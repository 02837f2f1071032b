#!/bin/bash
# The wheels the lent GPU machine lacks, downloaded here into .whl/ (ignored by git; name it in the
# device tool's `carry`). Its image has torch, numpy, opencv, scipy, PyYAML, tqdm and tensorboard
# but not albumentations and what albumentations needs; the app's gradio and the video path's av
# are not needed there. docs/gpu_session.sh installs whatever .whl/ holds. Run from the
# repository root, on a machine that reaches PyPI:
#   bash docs/gpu_wheels.sh
set -eu
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
  "albumentations==2.0.8" "albucore==0.0.24" "pydantic==2.11.7" "pydantic-core==2.33.2" \
  "annotated-types==0.7.0" "typing-inspection==0.4.1" "simsimd==6.5.0" "stringzilla==3.12.5"
ls -l .whl
du -sh .whl
