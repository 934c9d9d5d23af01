/* Correlated gaussian residuals within blocks (bayesglmm/residcorr.py).
 * e: residuals y - mu (data order); ord: rows in (block, time) order; lag: 0 for the first row
 * of a block, else the time lag to the previous row of the block (in that order).
 * Returns the log density of each row given the earlier rows of its block (in `ord` order);
 * their sum is the exact multivariate-normal log density of every block, computed without
 * forming any covariance matrix.
 */

/* AR(1), corr(e_r, e_c) = rho^|t_r - t_c|: Markov, so
 * e_t | e_prev ~ normal(rho^d * e_prev, sigma * sqrt(1 - rho^(2d))), d = lag (>= 1);
 * for unit lags this is the tridiagonal inverse with determinant sigma^(2T) (1 - rho^2)^(T-1). */
vector ar1_resid_pointwise(vector e, array[] int ord, array[] int lag, real rho, real sigma) {
  int N = rows(e);
  vector[N] lp;
  for (i in 1:N) {
    if (lag[i] == 0) {
      lp[i] = normal_lpdf(e[ord[i]] | 0, sigma);
    } else {
      real phi = rho;  // rho^lag
      for (j in 2:lag[i]) {
        phi *= rho;
      }
      lp[i] = normal_lpdf(e[ord[i]] | phi * e[ord[i - 1]], sigma * sqrt(1 - square(phi)));
    }
  }
  return lp;
}
