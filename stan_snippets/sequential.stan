/* Sequential (continuation-ratio) model with logit link.
 * Transitions k = 1..C-1: P(y > k | y >= k) = inv_logit(eta_k - c_k), so
 * P(y = j) = prod_{k<j} inv_logit(eta_k - c_k) * (1 - inv_logit(eta_j - c_j))  (j < C)
 * P(y = C) = prod_{k<C} inv_logit(eta_k - c_k).
 * Args: y category (1..C); eta: transition-specific linear predictors (length C-1);
 *       c: cutpoints (length C-1).
 */
real sequential_logit_lpmf(int y, row_vector eta, vector c) {
  int C1 = rows(c);
  real lp = 0;
  if (y > 1) {
    lp += sum(log_inv_logit(eta[1:(y - 1)]' - c[1:(y - 1)]));
  }
  if (y <= C1) {
    lp += log1m_inv_logit(eta[y] - c[y]);
  }
  return lp;
}

/* Vectorised over observations: eta is N x (C-1), one row per observation. */
real sequential_logit_lpmf(array[] int y, matrix eta, vector c) {
  real lp = 0;
  for (n in 1:size(y)) {
    lp += sequential_logit_lpmf(y[n] | eta[n], c);
  }
  return lp;
}

/* One coefficient per predictor, common to all transitions (brms' sratio):
 * P(y > k | y >= k) = inv_logit(eta - c_k). */
real sequential_logit_lpmf(int y, real eta, vector c) {
  int C1 = rows(c);
  real lp = 0;
  if (y > 1) {
    lp += sum(log_inv_logit(eta - c[1:(y - 1)]));
  }
  if (y <= C1) {
    lp += log1m_inv_logit(eta - c[y]);
  }
  return lp;
}

/* Vectorised over observations: eta is a vector, one linear predictor per observation. */
real sequential_logit_lpmf(array[] int y, vector eta, vector c) {
  real lp = 0;
  for (n in 1:size(y)) {
    lp += sequential_logit_lpmf(y[n] | eta[n], c);
  }
  return lp;
}
