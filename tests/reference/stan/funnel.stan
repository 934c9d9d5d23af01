// Neal's funnel: a deliberately hard geometry for NUTS (diagnostics tests)
parameters {
  real v;
  vector[9] x;
}
model {
  target += normal_lpdf(v | 0, 3);
  target += normal_lpdf(x | 0, exp(v / 2));
}
