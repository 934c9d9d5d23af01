// Writers, logger, file helpers and the run context of the driver.
#include "driver.hpp"

#include <stan/io/dump.hpp>
#include <stan/io/empty_var_context.hpp>
#include <stan/io/json/json_data.hpp>
#include <stan/version.hpp>

#include <cstdlib>
#include <ctime>
#include <sys/stat.h>

namespace bglmm {

// ---------------------------------------------------------------- csv_writer
void csv_writer::operator()(const std::vector<std::string>& names) {
  if (!out_ || names.empty()) return;
  for (size_t i = 0; i < names.size(); ++i) *out_ << (i ? "," : "") << names[i];
  *out_ << '\n';
}

void csv_writer::operator()(const std::vector<double>& state) {
  if (!out_ || state.empty()) return;
  for (size_t i = 0; i < state.size(); ++i) {
    if (i) *out_ << ',';
    *out_ << state[i];
  }
  *out_ << '\n';
}

void csv_writer::operator()() {
  if (out_) *out_ << prefix_ << '\n';
}

void csv_writer::operator()(const std::string& message) {
  if (out_) *out_ << prefix_ << message << '\n';
}

void csv_writer::operator()(const Eigen::Ref<Eigen::Matrix<double, -1, -1>>& values) {
  if (!out_) return;
  // Parameters in rows, draws in columns: one output line per column.
  for (Eigen::Index j = 0; j < values.cols(); ++j) {
    for (Eigen::Index i = 0; i < values.rows(); ++i) {
      if (i) *out_ << ", ";
      *out_ << values(i, j);
    }
    *out_ << '\n';
  }
}

// ---------------------------------------------------------------- logger
void console_logger::out(std::ostream& os, const std::string& m) {
  std::lock_guard<std::mutex> lock(mutex_);
  os << m << '\n';
  os.flush();
}

// ---------------------------------------------------------------- helpers
bool file_exists(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

namespace {
// Splits "dir/name.ext" into ("dir/name", ".ext"); no extension => ext "".
void split_ext(const std::string& path, std::string& base, std::string& ext) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    base = path;
    ext = "";
  } else {
    base = path.substr(0, dot);
    ext = path.substr(dot);
  }
}
}  // namespace

std::shared_ptr<stan::io::var_context> read_var_context(const std::string& path) {
  std::ifstream in(path);
  if (!in.good())
    throw std::invalid_argument("Cannot open specified file, \"" + path + "\"");
  if (ends_with(path, ".json"))
    return std::make_shared<stan::json::json_data>(in);
  std::cerr << "Warning: file '" << path
            << "' is being read as an R dump file (deprecated format); use JSON."
            << std::endl;
  return std::make_shared<stan::io::dump>(in);
}

std::vector<std::string> chain_file_names(const std::string& path, unsigned int id,
                                          size_t n) {
  if (n == 1) return {path};
  std::string base, ext;
  split_ext(path, base, ext);
  if (ext.empty()) ext = ".csv";
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i)
    names.push_back(base + "_" + std::to_string(id + i) + ext);
  return names;
}

std::vector<std::string> resolve_per_chain(const std::string& path, unsigned int id,
                                           size_t n, const std::string& what,
                                           const std::vector<std::string>& exts) {
  if (n == 1) {
    if (!file_exists(path))
      throw std::invalid_argument("Cannot open specified file, \"" + path + "\"");
    return {path};
  }
  std::string base, ext;
  split_ext(path, base, ext);
  bool ok_ext = false;
  for (auto& e : exts) ok_ext = ok_ext || e == ext;
  if (!ok_ext)
    throw std::invalid_argument("Invalid " + what + " file \"" + path
                                + "\" for multiple chains: unsupported suffix.");
  std::string first = base + "_" + std::to_string(id) + ext;
  std::vector<std::string> names;
  if (file_exists(first)) {
    for (size_t i = 0; i < n; ++i) {
      std::string f = base + "_" + std::to_string(id + i) + ext;
      if (!file_exists(f))
        throw std::invalid_argument("Cannot open specified " + what + " file, \"" + f
                                    + "\"");
      names.push_back(f);
    }
    return names;
  }
  if (file_exists(path)) return std::vector<std::string>(n, path);
  throw std::invalid_argument("Cannot open specified " + what + " file, \"" + path
                              + "\" (nor \"" + first + "\")");
}

csv_table read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in.good())
    throw std::invalid_argument("Cannot open specified file, \"" + path + "\"");
  csv_table t;
  std::string line;
  bool have_header = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (!have_header) t.comments.push_back(line);
      continue;
    }
    std::vector<std::string> cells;
    size_t pos = 0;
    while (true) {
      size_t comma = line.find(',', pos);
      std::string cell = line.substr(pos, comma == std::string::npos ? std::string::npos
                                                                     : comma - pos);
      size_t b = cell.find_first_not_of(" \t\"");
      size_t e = cell.find_last_not_of(" \t\"");
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (!have_header) {
      t.header = cells;
      have_header = true;
      continue;
    }
    if (cells.size() != t.header.size())
      throw std::invalid_argument("Bad row in file \"" + path + "\": expected "
                                  + std::to_string(t.header.size()) + " values, found "
                                  + std::to_string(cells.size()));
    std::vector<double> row;
    row.reserve(cells.size());
    for (auto& c : cells) {
      char* end = nullptr;
      double v = std::strtod(c.c_str(), &end);
      if (c.empty() || (end && *end != '\0'))
        throw std::invalid_argument("Non-numeric value \"" + c + "\" in file \"" + path
                                    + "\"");
      row.push_back(v);
    }
    t.rows.push_back(std::move(row));
  }
  if (!have_header)
    throw std::invalid_argument("No header row found in file \"" + path + "\"");
  return t;
}

std::vector<int> param_columns(const stan::model::model_base& model,
                               const std::vector<std::string>& header,
                               const std::string& file) {
  std::vector<std::string> names;
  model.constrained_param_names(names, false, false);
  std::vector<int> cols;
  for (auto& n : names) {
    int found = -1;
    for (size_t j = 0; j < header.size(); ++j)
      if (header[j] == n) {
        found = static_cast<int>(j);
        break;
      }
    if (found < 0)
      throw std::invalid_argument(
          "Mismatch between model and fitted_parameters csv file \"" + file
          + "\": column " + n + " not found");
    cols.push_back(found);
  }
  return cols;
}

Eigen::VectorXd unconstrain_row(const stan::model::model_base& model,
                                const std::vector<std::string>& header,
                                const std::vector<double>& row,
                                const std::string& file) {
  std::vector<int> cols = param_columns(model, header, file);
  Eigen::VectorXd c(cols.size());
  for (size_t i = 0; i < cols.size(); ++i) c(i) = row[cols[i]];
  Eigen::VectorXd u;
  std::stringstream msg;
  model.unconstrain_array(c, u, &msg);
  if (!msg.str().empty()) std::cout << msg.str();
  return u;
}

// ---------------------------------------------------------------- Run
int Run::geti(const std::string& path) { return std::stoi(arg(path).value); }
double Run::getd(const std::string& path) { return std::stod(arg(path).value); }
bool Run::getb(const std::string& path) { return arg(path).value == "true"; }
const std::string& Run::gets(const std::string& path) { return arg(path).value; }

std::unique_ptr<std::ofstream> Run::open_output(const std::string& path) {
  std::unique_ptr<std::ofstream> os(new std::ofstream(path));
  if (!os->good())
    throw std::invalid_argument("Cannot open output file \"" + path + "\"");
  if (sig_figs >= 0) os->precision(sig_figs);
  return os;
}

void Run::write_config(stan::callbacks::writer& w) {
  w("stan_version_major = " + stan::MAJOR_VERSION);
  w("stan_version_minor = " + stan::MINOR_VERSION);
  w("stan_version_patch = " + stan::PATCH_VERSION);
  w("model = " + model->model_name());
  w("start_datetime = " + start_datetime);
  std::ostringstream tree;
  print_tree(*root, tree, "");
  std::istringstream lines(tree.str());
  std::string line;
  while (std::getline(lines, line)) w(line);
  for (auto& s : model->model_compile_info()) w(s);
}

std::vector<std::shared_ptr<stan::io::var_context>> Run::inits(size_t n) {
  std::vector<std::shared_ptr<stan::io::var_context>> ctx;
  if (!init_is_file) {
    for (size_t i = 0; i < n; ++i)
      ctx.push_back(std::make_shared<stan::io::empty_var_context>());
    return ctx;
  }
  for (auto& f : resolve_per_chain(init, id, n, "init", {".json", ".R"}))
    ctx.push_back(read_var_context(f));
  return ctx;
}

}  // namespace bglmm
