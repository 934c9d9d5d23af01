/* bayesglmm: C interface of a Stan model shared library, binary compatible with the
 * interface the `bridgestan` 2.9.0 Python client loads (see
 * /work/shared/docs/cmdstan-contract.md, section F).  Written for this project.
 *
 * Conventions: `int` functions return 0 on success and -1 on failure; pointer
 * constructors return NULL on failure.  On failure, when `error_msg` is not NULL,
 * *error_msg receives a malloc'ed message to be released with bs_free_error_msg(). */
#ifndef BAYESGLMM_BRIDGESTAN_H
#define BAYESGLMM_BRIDGESTAN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#else
#include <stdbool.h>
#endif

#if defined(_WIN32)
#define BS_PUBLIC __declspec(dllexport)
#else
#define BS_PUBLIC __attribute__((visibility("default")))
#endif

typedef struct bs_model bs_model;
typedef struct bs_rng bs_rng;
typedef void (*STREAM_CALLBACK)(const char* data, size_t size);

BS_PUBLIC extern const int bs_major_version;
BS_PUBLIC extern const int bs_minor_version;
BS_PUBLIC extern const int bs_patch_version;

BS_PUBLIC bs_model* bs_model_construct(const char* data, unsigned int seed,
                                       char** error_msg);
BS_PUBLIC void bs_model_destruct(bs_model* m);
BS_PUBLIC void bs_free_error_msg(char* error_msg);
BS_PUBLIC int bs_set_print_callback(STREAM_CALLBACK callback, char** error_msg);

BS_PUBLIC const char* bs_name(const bs_model* m);
BS_PUBLIC const char* bs_model_info(const bs_model* m);

BS_PUBLIC int bs_param_num(const bs_model* m, bool include_tp, bool include_gq);
BS_PUBLIC int bs_param_unc_num(const bs_model* m);
BS_PUBLIC const char* bs_param_names(const bs_model* m, bool include_tp,
                                     bool include_gq);
BS_PUBLIC const char* bs_param_unc_names(const bs_model* m);

BS_PUBLIC int bs_param_constrain(const bs_model* m, bool include_tp,
                                 bool include_gq, const double* theta_unc,
                                 double* theta, bs_rng* rng, char** error_msg);
BS_PUBLIC int bs_param_unconstrain(const bs_model* m, const double* theta,
                                   double* theta_unc, char** error_msg);
BS_PUBLIC int bs_param_unconstrain_json(const bs_model* m, const char* json,
                                        double* theta_unc, char** error_msg);
BS_PUBLIC int bs_param_initialize(const bs_model* m, const char* json,
                                  bs_rng* rng, double init_radius,
                                  int max_tries, bool jacobian,
                                  double* theta_unc, char** error_msg);

BS_PUBLIC int bs_log_density(const bs_model* m, bool propto, bool jacobian,
                             const double* theta_unc, double* lp,
                             char** error_msg);
BS_PUBLIC int bs_log_density_gradient(const bs_model* m, bool propto,
                                      bool jacobian, const double* theta_unc,
                                      double* lp, double* grad,
                                      char** error_msg);
BS_PUBLIC int bs_log_density_hessian(const bs_model* m, bool propto,
                                     bool jacobian, const double* theta_unc,
                                     double* lp, double* grad, double* hessian,
                                     char** error_msg);
BS_PUBLIC int bs_log_density_hessian_vector_product(
    const bs_model* m, bool propto, bool jacobian, const double* theta_unc,
    const double* v, double* lp, double* hvp, char** error_msg);

BS_PUBLIC bs_rng* bs_rng_construct(unsigned int seed, char** error_msg);
BS_PUBLIC void bs_rng_destruct(bs_rng* rng);

#ifdef __cplusplus
}
#endif

#endif
