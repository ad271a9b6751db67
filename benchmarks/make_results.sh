#!/usr/bin/env bash
# Re-make the committed records under results/ (schema v2) with the commands that made them. Resumable: every
# `run` resumes from its <record>.partial/ folder; a finished step is skipped when its output exists.
# Run from the repository root with the data decoded (ZEROPUR_BENCH_DATA or ./data):
#     bash benchmarks/make_results.sh [STEP ...]        # steps: tour cifar100 bpda-tour baselines sanity figures table2 hill da
#                                                           calibration profiles adaptive50 table6-b table6-vs
#                                                           sanity-b fig5 table3 fastat purifiers resnet18
set -euo pipefail
cd "$(dirname "$0")/.."
ZB="zeropur-bench"
R20="--model resnet20-cifar10-public"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tour cifar100 bpda-tour baselines sanity figures hill da)

for step in "${steps[@]}"; do
  echo "== $step ($(date +%T))"
  case "$step" in
    tour)       # README tour, Table 2 cell group (transfer PGD-20 + AutoAttack-rand, ZeroPur C and C-F)
      $ZB run --dataset cifar10 --threat linf $R20 --n-ex 200 --no-progress --out results/ ;;
    cifar100)   # Table 4 rows on the shipped CIFAR-100 default classifier
      $ZB run --dataset cifar100 --threat linf --n-ex 100 --no-progress --out results/ ;;
    bpda-tour)  # README adaptive example: BPDA+EOT 10 steps against C and C-F
      $ZB run $R20 --n-ex 100 --setting adaptive --attack bpda-eot:steps=10 --stages c --stages cf \
          --no-progress --out results/ ;;
    baselines)  # the CI regression baselines, re-made from their stored configurations
      for b in results/baselines/*.json; do $ZB check --baseline "$b" --update --no-progress; done ;;
    sanity)     # Carlini et al.'s checks on ZeroPur-C
      $ZB sanity $R20 --n-ex 100 --out results/sanity/cifar10-resnet20-c.json ;;
    figures)    # README figures (issue 15): sweeps for Fig. 5/6, then one figure of each kind from committed records
      F=results/figures; S=results/sweeps
      $ZB sweep $R20 --n-ex 64 --attack pgd --stages cf --param fine_steps --values 0,10,25,50 \
          --no-progress --out-dir $S/steps/
      $ZB sweep $R20 --n-ex 64 --attack pgd --stages cf --param coarse_steps --values 0,5,10 \
          --param2 fine_steps --values2 0,25,50 --no-progress --out-dir $S/grid/
      $ZB plot steps --results $S/steps/ --out $F/steps.png
      $ZB plot grid --results $S/grid/ --out $F/grid.png
      $ZB plot attack-curve --results "$(ls results/cifar10-linf-resnet20-cifar10-public-adaptive-*.json | head -1)" \
          --out $F/attack-curve.png
      $ZB plot eps --results results/sanity/cifar10-resnet20-c.json --out $F/eps.png
      TOUR=results/cifar10-linf-resnet20-cifar10-public-transfer-68587c1fe199036a.json  # the authors-profile tour
      $ZB plot cosine --results "$TOUR" --variant zeropur-c --n 8 --out $F/cosine.png
      $ZB plot images --results "$TOUR" --variant zeropur-cf --pick failures --n 4 --out $F/images.png ;;
    table2)     # Table 2, ResNet-20 rows: V/B/S x C/C-F, transfer PGD-20 + AutoAttack-rand, the paper's blur per
                # recipe (median 3x3 for Vanilla, gaussian sigma 1.2 for Standard/Strong); N=1000 is the paper's grid
      for recipe in vanilla standard strong; do
        if ! python -c "from zeropur_bench import registry; raise SystemExit(registry.get('resnet20-cifar10-$recipe') is None)"; then
          echo "resnet20-cifar10-$recipe is not shipped yet: skipped"; continue; fi
        blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        $ZB run --dataset cifar10 --threat linf --model resnet20-cifar10-$recipe --blur $blur --n-ex "${N:-1000}" \
            --no-progress --out results/
      done ;;
    calibration) # issue 20: both calibration rules per shipped classifier (training slices only) and the rule study
      python benchmarks/calibration_study.py --out results/calibration
      python benchmarks/calibration_study.py --out results/calibration --summary ;;
    profiles)   # issue 20: Tables 2 and 4 on the paper's grid under the three profiles, one adversarial set per
                # classifier: the blur alone, C and C-F (authors, paper), C-F (calibrated); the paper's blur per recipe
      for ds in ${DATASETS:-cifar10 cifar100}; do for recipe in vanilla standard strong; do
        blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        $ZB run --dataset $ds --threat linf --model resnet20-$ds-$recipe --blur $blur --defense blur \
            --defense zeropur --profile authors --profile paper --profile calibrated --attack pgd \
            --attack autoattack:version=rand --n-ex "${N:-1000}" --no-progress --out results/
      done; done ;;
    adaptive50) # issue 20: Hill et al.'s BPDA+EOT (50 steps, any-step) against calibrated C-F, CIFAR-10, n=100
      for recipe in vanilla standard strong; do
        blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        $ZB run --dataset cifar10 --threat linf --model resnet20-cifar10-$recipe --blur $blur --profile calibrated \
            --stages cf --setting adaptive --attack bpda-eot --n-ex "${N_ADAPTIVE:-100}" --no-progress --out results/
      done ;;
    table6-b)   # issue 23: Table 6, calibrated B-C-F and B-C (shipped Standard ResNet-20, the paper's blur), n=200, the
                # full adaptive suite as a cascade (each attack only on the survivors of the earlier ones):
                # BPDA+EOT (Hill et al.: 50 steps, 2/255, random start, EOT 15 / 150 verifications -> 1 if deterministic),
                # Square 1000 queries, the defense-aware lambda sweep, full-gradient PGD-EOT with the smooth
                # surrogate, AutoAttack through BPDA ('rand' -> 'standard' on a deterministic defense)
      for st in ${STAGES:-cf c}; do
        $ZB run --dataset cifar10 --threat linf --model resnet20-cifar10-standard --blur gaussian:1.2 \
            --profile calibrated --stages $st --setting adaptive --cascade --attack bpda-eot \
            --attack square:n_queries=1000 --attack defense-aware --attack pgd-eot:surrogate=normalized \
            --attack autoattack-bpda --n-ex "${N_TABLE6:-200}" --no-progress --out results/
      done ;;
    table6-vs)  # issue 23: Table 6, calibrated V and S, C and C-F, n=100: BPDA+EOT (50 steps) then Square-1000
      for rs in ${RECIPE_STAGES:-strong:cf vanilla:c strong:c vanilla:cf}; do
        recipe=${rs%%:*}; st=${rs##*:}; blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        $ZB run --dataset cifar10 --threat linf --model resnet20-cifar10-$recipe --blur $blur --profile calibrated \
            --stages $st --setting adaptive --cascade --attack bpda-eot --attack square:n_queries=1000 \
            --n-ex "${N_TABLE6_VS:-100}" --no-progress --out results/
      done ;;
    sanity-b)   # issue 23: Carlini et al.'s checks on calibrated B-C and B-C-F (shipped Standard ResNet-20, the paper's blur)
      for st in ${STAGES:-c cf}; do
        $ZB sanity --model resnet20-cifar10-standard --profile calibrated --stages $st --n-ex 100 \
            --out results/sanity/cifar10-resnet20-standard-calibrated-$st.json
      done ;;
    fig5)       # issue 23: Figure 5, calibrated B-C-F: robust accuracy vs fine steps under BPDA+EOT (10 steps) and
                # the defense-aware lambda sweep, n=100 per point
      $ZB sweep --model resnet20-cifar10-standard --profile calibrated --stages cf --setting adaptive \
          --attack bpda-eot:steps=10 --n-ex 100 --param fine_steps --values 0,10,25,50 --no-progress \
          --out-dir results/sweeps/fig5-bpda/
      $ZB sweep --model resnet20-cifar10-standard --profile calibrated --stages cf --setting adaptive \
          --attack defense-aware --n-ex 100 --param fine_steps --values 0,10,25,50 --no-progress \
          --out-dir results/sweeps/fig5-da/
      $ZB plot steps --results results/sweeps/fig5-bpda/ --out results/figures/fig5-bpda.png
      $ZB plot steps --results results/sweeps/fig5-da/ --out results/figures/fig5-da.png ;;
    hill)       # Hill et al.'s full BPDA+EOT protocol (50 steps, EOT 15 / 150 verifications, random start) vs C
      $ZB run $R20 --n-ex 200 --batch-size 50 --setting adaptive --attack bpda-eot --stages c \
          --no-progress --out results/adaptive/ ;;
    da)         # Mao et al.'s defense-aware attack (λ 0.1 / 1 / 10, 10 steps) vs C-F
      $ZB run $R20 --n-ex 200 --batch-size 50 --setting adaptive --attack defense-aware --stages cf \
          --no-progress --out results/adaptive/ ;;
    table3)     # issue 30: Table 3 (L2, eps 0.5) on the shipped ResNet-20s: C, C-F (authors) and C-F (calibrated) on one
                # adversarial set per classifier; transfer PGD-20 (App. A.2: step 0.05) at n=1000, AutoAttack-rand at
                # n=500 (N3_AA), then BPDA+EOT-50 at L2 against calibrated C-F (n=100); the paper's blur per recipe
      for recipe in ${RECIPES:-vanilla standard strong}; do
        blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        $ZB run --dataset cifar10 --threat l2 --model resnet20-cifar10-$recipe --blur $blur --defense zeropur \
            --profile authors --profile calibrated --attack pgd --n-ex "${N3:-1000}" --batch-size 500 \
            --no-progress --out results/
        [ -n "${SKIP_AA:-}" ] || $ZB run --dataset cifar10 --threat l2 --model resnet20-cifar10-$recipe --blur $blur \
            --defense zeropur --profile authors --profile calibrated --attack autoattack:version=rand \
            --n-ex "${N3_AA:-500}" --batch-size 250 --no-progress --out results/
        [ -n "${SKIP_ADAPTIVE:-}" ] || $ZB run --dataset cifar10 --threat l2 --model resnet20-cifar10-$recipe \
            --blur $blur --profile calibrated --stages cf --setting adaptive --attack bpda-eot \
            --n-ex "${N3_ADAPTIVE:-100}" --batch-size 50 --no-progress --out results/
      done
      $ZB table --out results/table3.md ;;
    fastat)     # issue 34: the static reference, fast adversarial training (Wong et al. 2020: FGSM-RS, eps 8/255, step
                # 10/255, cyclic lr 0.2, 15 epochs, batch 128), bf16 where the CPU has it; then AutoAttack (standard,
                # its own settings) on the bare model at n=1000, in batches that bank progress
      python -m zeropur_bench.train --dataset cifar10 --arch resnet20 --aug standard --epochs 15 --lr 0.2 \
          --schedule cyclic --adversarial fgsm-rs --out runs/c10_r20_fastat --precision auto --channels-last \
          --num-threads 1 --no-progress
      $ZB run --model resnet20-cifar10-fastat --defense none --setting adaptive --attack autoattack:version=standard \
          --n-ex 1000 --batch-size 250 --no-progress --out results/purifiers/ ;;
    purifiers)  # issue 34: the training-free purifiers under one protocol, per classifier (shipped Standard ResNet-20,
                # then the adversarially trained one): clean + transfer PGD-20 at n=1000; the adaptive cascade at n=500
                # (anti-adversary n=200): BPDA+EOT-50 (EOT 15 over a randomised purifier's draws), the full-gradient
                # PGD-EOT where the purifier offers one, Square-1000, AutoAttack through BPDA ('rand' with EOT 20 on
                # a randomised purifier; through the full gradient where BPDA is not offered). A randomised purifier
                # is judged worst-of-10, clean and attacked alike.
                # ZeroPur (calibrated C and C-F, blur gaussian:1.2: the Standard recipe's, which both board classifiers
                # were trained with) is measured at n=100 under BPDA+EOT-50 then Square-1000, as issue 34 sizes it;
                # its sanity checks run on C-F. The default list is the board's protocol (reports.purifiers.PROTOCOL).
      purifiers=${PURIFIERS:-$(python -c "from zeropur_bench.reports.purifiers import PROTOCOL_NAMES as p; print(*p)")}
      for clf in ${CLASSIFIERS:-resnet20-cifar10-standard resnet20-cifar10-fastat}; do
        for d in $purifiers; do
          est=""; n=${N_PURIFIERS:-500}; bs=250; def="--defense $d"; sanity_def="$def"
          case $d in tvm|random-resize-pad|mixup-inference) est="--estimator worst-of-n --estimator-n 10" ;; esac
          case $d in
            bit-depth)        atk="--attack bpda-eot --attack square:n_queries=1000 --attack autoattack-bpda" ;;
            jpeg)             atk="--attack bpda-eot --attack pgd-eot:surrogate=diff-jpeg --attack square:n_queries=1000 --attack autoattack-bpda" ;;
            random-resize-pad|mixup-inference)
                              atk="--attack pgd-eot --attack square:n_queries=1000 --attack autoattack:version=rand" ;;
            anti-adversary)   atk="--attack bpda-eot --attack pgd-eot --attack square:n_queries=1000 --attack autoattack-bpda"
                              n=${N_ANTI:-200} ;;
            zeropur)          atk="--attack bpda-eot --attack square:n_queries=1000"; n=${N_ZEROPUR:-100}; bs=10
                              def="--defense zeropur --profile calibrated --stages c --stages cf --blur gaussian:1.2"
                              sanity_def="--defense zeropur --profile calibrated --stages cf --blur gaussian:1.2" ;;
            *)                atk="--attack bpda-eot --attack pgd-eot --attack square:n_queries=1000 --attack autoattack-bpda" ;;
          esac
          $ZB run --model $clf $def --attack pgd --n-ex 1000 --batch-size 250 $est --no-progress \
              --out results/purifiers/
          $ZB run --model $clf $def --setting adaptive --cascade $atk --n-ex $n --batch-size $bs $est \
              --no-progress --out results/purifiers/
          $ZB sanity --model $clf $sanity_def --n-ex 100 $est --out results/purifiers/sanity-$clf-$d.json
        done
      done
      $ZB purifiers --results results/purifiers --results results --model resnet20-cifar10-standard \
          --model resnet20-cifar10-fastat --out results/purifiers.md ;;
    resnet18)   # issue 30: Tables 2 and 3 on each shipped ResNet-18 (RECIPES, default standard strong vanilla), sized
                # for two cores in fp32: Table 2 PGD-20 at n=500 and AutoAttack-rand at n=200 for C (authors), C-F
                # (authors) and C-F (calibrated) (C runs no fine stage: one C row); the adaptive column, BPDA+EOT-50
                # any-step against calibrated C-F at n=50; Table 3 (L2 0.5) C-F (authors, calibrated), PGD-20 and
                # AutoAttack-rand at n=200. The paper's blur per recipe. Batches are sized to bank progress within
                # about an hour on two cores; each run resumes from its .partial/ folder.
      for recipe in ${RECIPES:-standard strong vanilla}; do
        name=resnet18-cifar10-$recipe
        # one registry look-up: 3 not shipped, 4 shipped without calibrations ('calibrated' needs them: both
        # rules, clean training images only, fitted and shipped first; about an hour on two cores for a ResNet-18)
        rc=0; python -c "from zeropur_bench import registry; e = registry.get('$name'); raise SystemExit(3 if e is None else 0 if e.calibrations else 4)" || rc=$?
        [ $rc -eq 3 ] && { echo "$name is not shipped yet: skipped"; continue; }
        if [ $rc -eq 4 ]; then
          python benchmarks/calibration_study.py --out results/calibration --models $name --calibrate-only
          python benchmarks/ship_calibrations.py results/calibration
        elif [ $rc -ne 0 ]; then exit $rc; fi
        blur=gaussian:1.2; [ $recipe = vanilla ] && blur=median:3
        zp="--defense zeropur --profile authors --profile calibrated --blur $blur"
        $ZB run --dataset cifar10 --threat linf --model $name $zp --attack pgd --n-ex "${N18:-500}" \
            --batch-size "${BS18:-100}" --no-progress --out results/
        $ZB run --dataset cifar10 --threat linf --model $name $zp --attack autoattack:version=rand \
            --n-ex "${N18_AA:-200}" --batch-size "${BS18:-100}" --no-progress --out results/
        $ZB run --dataset cifar10 --threat linf --model $name --blur $blur --profile calibrated --stages cf \
            --setting adaptive --attack bpda-eot --n-ex "${N18_ADAPTIVE:-50}" --batch-size "${BS18_ADAPTIVE:-10}" \
            --no-progress --out results/
        $ZB run --dataset cifar10 --threat l2 --model $name $zp --stages cf --attack pgd \
            --attack autoattack:version=rand --n-ex "${N18_L2:-200}" --batch-size "${BS18:-100}" --no-progress \
            --out results/
      done
      $ZB table --out results/table2.md
      $ZB table --out results/table3.md ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
