// bayesglmm CmdStan-compatible driver: shared declarations.
//
// The driver is compiled once, independently of any model, and reaches the model
// through the factory function that stanc emits at the end of every generated header.
#ifndef BAYESGLMM_DRIVER_HPP
#define BAYESGLMM_DRIVER_HPP

#include <stan/callbacks/interrupt.hpp>
#include <stan/callbacks/logger.hpp>
#include <stan/callbacks/writer.hpp>
#include <stan/io/var_context.hpp>
#include <stan/math/prim/fun/Eigen.hpp>
#include <stan/model/model_base.hpp>

#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// Provided by the stanc-generated model header (one model per executable).
stan::model::model_base& new_model(stan::io::var_context& data_context,
                                   unsigned int seed, std::ostream* msg_stream);

namespace bglmm {

// ---------------------------------------------------------------- argument tree
struct Arg {
  enum Kind { CAT, LIST, INT, REAL, BOOL, STR };
  std::string name;
  Kind kind;
  std::string value;  // normalised text (leaves) or selected option (lists)
  std::string def;    // default, same normalisation
  bool given = false;
  long long ilo = 0, ihi = 0;        // INT range (inclusive)
  double rlo = 0, rhi = 0;           // REAL range
  bool rlo_open = false;             // REAL: lower bound excluded
  bool ranged = false;
  std::vector<std::unique_ptr<Arg>> kids;  // CAT: sub-arguments; LIST: options
  Arg(const std::string& n, Kind k) : name(n), kind(k) {}
  Arg* child(const std::string& n) const;
  Arg* selected() const { return child(value); }  // LIST only
  // Normalises and validates a textual value; returns false when invalid.
  bool set(const std::string& text);
};

// Thrown for command-line errors: message goes to stderr, exit status 1.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::unique_ptr<Arg> make_tree(const std::string& default_threads);
// Parses argv[1..]; throws usage_error.
void parse_args(Arg& root, const std::vector<std::string>& tokens);
// Prints the tree, each line preceded by prefix.
void print_tree(const Arg& root, std::ostream& os, const std::string& prefix);
void print_help(std::ostream& os);
// Looks up a node by dotted path, list options included: "method.sample.num_samples".
Arg& at(Arg& root, const std::string& path);

// ---------------------------------------------------------------- callbacks
// CSV/comment writer following CmdStan's conventions.  A null stream makes it a no-op.
class csv_writer : public stan::callbacks::writer {
 public:
  explicit csv_writer(std::ostream* out = nullptr, const std::string& prefix = "# ")
      : out_(out), prefix_(prefix) {}
  void operator()(const std::vector<std::string>& names) override;
  void operator()(const std::vector<double>& state) override;
  void operator()() override;
  void operator()(const std::string& message) override;
  void operator()(const Eigen::Ref<Eigen::Matrix<double, -1, -1>>& values) override;
  std::ostream* stream() { return out_; }

 private:
  std::ostream* out_;
  std::string prefix_;
};

// Thread-safe line logger: debug/info/warn to stdout, error/fatal to stderr.
class console_logger : public stan::callbacks::logger {
 public:
  void debug(const std::string& m) override { out(std::cout, m); }
  void debug(const std::stringstream& m) override { out(std::cout, m.str()); }
  void info(const std::string& m) override { out(std::cout, m); }
  void info(const std::stringstream& m) override { out(std::cout, m.str()); }
  void warn(const std::string& m) override { out(std::cout, m); }
  void warn(const std::stringstream& m) override { out(std::cout, m.str()); }
  void error(const std::string& m) override { out(std::cerr, m); }
  void error(const std::stringstream& m) override { out(std::cerr, m.str()); }
  void fatal(const std::string& m) override { out(std::cerr, m); }
  void fatal(const std::stringstream& m) override { out(std::cerr, m.str()); }

 private:
  void out(std::ostream& os, const std::string& m);
  std::mutex mutex_;
};

// ---------------------------------------------------------------- run context
struct Run {
  Arg* root = nullptr;
  stan::model::model_base* model = nullptr;
  unsigned int seed = 0;
  unsigned int id = 1;
  std::string init;          // init argument as given
  double init_radius = 2.0;  // numeric init, or 2 when a file is given
  bool init_is_file = false;
  std::string output_file, diagnostic_file, profile_file, data_file;
  int refresh = 100;
  int sig_figs = -1;
  std::string start_datetime;
  console_logger logger;
  stan::callbacks::interrupt interrupt;

  Arg& arg(const std::string& path) { return at(*root, path); }
  int geti(const std::string& path);
  double getd(const std::string& path);
  bool getb(const std::string& path);
  const std::string& gets(const std::string& path);

  // Opens an output file (precision from sig_figs) and writes the config header.
  std::unique_ptr<std::ofstream> open_output(const std::string& path);
  void write_config(stan::callbacks::writer& w);
  // Initial-value contexts for n chains/paths starting at id (file resolution C.4).
  std::vector<std::shared_ptr<stan::io::var_context>> inits(size_t n);
};

// helpers
bool file_exists(const std::string& path);
bool ends_with(const std::string& s, const std::string& suffix);
std::shared_ptr<stan::io::var_context> read_var_context(const std::string& path);
// <base>_<id+i><ext> names for n > 1 (the name itself when n == 1).
std::vector<std::string> chain_file_names(const std::string& path, unsigned int id,
                                          size_t n);
// Input file per chain: X_<id+i>.ext if the first exists, else X.ext for all.
std::vector<std::string> resolve_per_chain(const std::string& path, unsigned int id,
                                           size_t n, const std::string& what,
                                           const std::vector<std::string>& exts);
struct csv_table {
  std::vector<std::string> comments;  // comment lines before the header
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
};
csv_table read_csv(const std::string& path);
// Unconstrained vector from a row of a CSV with constrained values (by column name).
Eigen::VectorXd unconstrain_row(const stan::model::model_base& model,
                                const std::vector<std::string>& header,
                                const std::vector<double>& row,
                                const std::string& file);
std::vector<int> param_columns(const stan::model::model_base& model,
                               const std::vector<std::string>& header,
                               const std::string& file);

// ---------------------------------------------------------------- methods
int run_sample(Run& r);
int run_optimize(Run& r);
int run_laplace(Run& r);
int run_variational(Run& r);
int run_pathfinder(Run& r);
int run_generate_quantities(Run& r);
int run_log_prob(Run& r);
int run_diagnose(Run& r);

}  // namespace bglmm

#endif
