"""The main example: the debate random-intercept model fitted by MAP and by NUTS.

Run with `make demo` (which installs everything first).
"""
import bayesglmm as bg

debate = bg.load_debate()
model = bg.lmer("sat ~ talk + perf + (1 | group)", data=debate, prior=bg.prior_normal())

print("=== Generated Stan program ===")
model.print_code()

print("\n=== MAP estimation ===")
print(model.optimize(seed=1))

print("\n=== NUTS sampling (4 chains x 1000 draws) ===")
print(model.sample(chains=4, warmup=1000, sampling=1000, seed=1))
