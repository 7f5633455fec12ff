# @summary The sample module: one file, to show that an agent applied this server's catalog.
#
# @param path Where the file goes on the agent.
class crust_sample (
  Pattern[/\A\//] $path = '/etc/crust-puppet-sample',
) {
  file { $path:
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => "Managed by Puppet for ${trusted['certname']} from ${server_facts['servername']}\n",
  }
}
