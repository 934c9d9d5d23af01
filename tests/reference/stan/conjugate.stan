// y_i ~ N(mu, 1), mu ~ N(0, s^2): the marginal likelihood is known in closed form
data { int<lower=1> n; vector[n] y; real<lower=0> s; }
parameters { real mu; }
model {
  target += normal_lpdf(mu | 0, s);
  target += normal_lpdf(y | mu, 1);
}
