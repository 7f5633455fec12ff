# Every node gets the sample class; a control repository replaces this file.
node default {
  include crust_sample
}
