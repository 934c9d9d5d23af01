// y_i ~ N(mu + b * x_i + tau * z[g_i], sigma^2), z ~ N(0, 1), mu, b ~ N(0, s^2), sigma and tau
// known (data): y is multivariate normal, N(0, sigma^2 I + tau^2 Z Z' + s^2 (1 1' + x x')), and
// the posterior of (mu, b, z) is exactly Gaussian, so the Laplace log marginal likelihood of
// optimize() (z integrated out, then (mu, b)) equals the closed form.
data {
  int<lower=1> N;
  int<lower=1> G;
  array[N] int<lower=1, upper=G> g;
  vector[N] x;
  vector[N] y;
  real<lower=0> sigma;
  real<lower=0> tau;
  real<lower=0> s;
}
parameters {
  real mu;
  real b;
  vector[G] z;
}
model {
  target += normal_lpdf(mu | 0, s);
  target += normal_lpdf(b | 0, s);
  target += std_normal_lpdf(z);
  target += normal_lpdf(y | mu + b * x + tau * z[g], sigma);
}
