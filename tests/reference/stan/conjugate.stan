data {
  int<lower=1> N;
  vector[N] y;
  real<lower=0> s;
}
parameters {
  real mu;
}
model {
  target += normal_lpdf(mu | 0, s);
  target += normal_lpdf(y | mu, 1);
}
generated quantities {
  vector[N] log_lik;
  for (n in 1:N) log_lik[n] = normal_lpdf(y[n] | mu, 1);
}
