/* Compound-symmetry residuals within blocks (bayesglmm/residcorr.py): e = y - mu (data order),
 * ord = rows in block order, lag[i] == 0 marks the first row of a block. Returns the log density
 * of each row given the earlier rows of its block; they sum to the exact multivariate-normal
 * block log densities, without forming any covariance matrix.
 */

/* Compound symmetry, corr(e_r, e_c) = rho (r != c): given the k earlier residuals of the
 * block with sum S, e ~ normal(rho * S / (1 + (k - 1) rho), sigma^2 (1 - k rho^2 / (1 + (k - 1) rho))). */
vector cs_resid_pointwise(vector e, array[] int ord, array[] int lag, real rho, real sigma) {
  int N = rows(e);
  vector[N] lp;
  real S = 0;  // sum of the earlier residuals of the block
  int k = 0;  // their number
  for (i in 1:N) {
    if (lag[i] == 0) {
      S = 0;
      k = 0;
    }
    real d = 1 + (k - 1) * rho;
    lp[i] = normal_lpdf(e[ord[i]] | rho * S / d, sigma * sqrt(1 - k * square(rho) / d));
    S += e[ord[i]];
    k += 1;
  }
  return lp;
}
