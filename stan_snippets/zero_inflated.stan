/* Zero-inflated counts: with probability inv_logit(zeta) a structural zero, otherwise a count
 * with log mean eta (Poisson, or NB2 with precision phi):
 *   P(y = 0) = inv_logit(zeta) + (1 - inv_logit(zeta)) * P_count(0)
 *   P(y > 0) = (1 - inv_logit(zeta)) * P_count(y)
 */
real zero_inflated_poisson_log_lpmf(int y, real eta, real zeta) {
  if (y == 0) {
    return log_sum_exp(log_inv_logit(zeta), log1m_inv_logit(zeta) + poisson_log_lpmf(0 | eta));
  }
  return log1m_inv_logit(zeta) + poisson_log_lpmf(y | eta);
}

real zero_inflated_poisson_log_lpmf(array[] int y, vector eta, vector zeta) {
  real lp = 0;
  for (n in 1:size(y)) {
    lp += zero_inflated_poisson_log_lpmf(y[n] | eta[n], zeta[n]);
  }
  return lp;
}

real zero_inflated_neg_binomial_2_log_lpmf(int y, real eta, real phi, real zeta) {
  if (y == 0) {
    return log_sum_exp(log_inv_logit(zeta),
                       log1m_inv_logit(zeta) + neg_binomial_2_log_lpmf(0 | eta, phi));
  }
  return log1m_inv_logit(zeta) + neg_binomial_2_log_lpmf(y | eta, phi);
}

real zero_inflated_neg_binomial_2_log_lpmf(array[] int y, vector eta, real phi, vector zeta) {
  real lp = 0;
  for (n in 1:size(y)) {
    lp += zero_inflated_neg_binomial_2_log_lpmf(y[n] | eta[n], phi, zeta[n]);
  }
  return lp;
}
