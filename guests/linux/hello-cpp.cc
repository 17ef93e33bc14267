/*
 * A static Linux C++ program (g++ -static: libstdc++ and glibc linked in), run by Machine.exec
 * and `ipre exec` (test/linux-langs.test.ts, test/cli.test.ts): std::vector, std::string,
 * std::map, iostream, and an exception thrown and caught inside (the unwinder must work).
 * Exit code: 20 + argc.
 */
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

static int parse(const std::string &s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) throw std::invalid_argument("not a number: " + s);
  return std::stoi(s);
}

int main(int argc, char **argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::map<std::string, int> counts;
  for (const char *w : {"b", "a", "c", "a", "b", "a"}) counts[w]++;
  std::cout << "hello from C++: argc=" << argc << "\n";
  for (size_t i = 0; i < args.size(); i++) std::cout << "argv[" << i << "]=" << args[i] << "\n";
  for (const auto &[word, n] : counts) std::cout << word << "=" << n << " ";
  std::cout << "\n";
  try {
    parse("12x");
    std::cout << "no exception?\n";
  } catch (const std::invalid_argument &e) {
    std::cout << "caught: " << e.what() << "\n";
  }
  std::cout << "parsed " << parse("42") << std::endl;
  std::cerr << "C++ stderr" << std::endl;
  return 20 + argc;
}
