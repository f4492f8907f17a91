//! The EMC's wording for the inputs whose label it is known for (reference §3.6, §4.3, §6.1 and
//! the seeds' own steps); any other input is labelled with its Exchange property name, which
//! is also what the shell takes.

/// The label of `prop` on an object called `noun` (the table's noun), when the EMC has one.
pub fn label(noun: &str, prop: &str) -> Option<&'static str> {
    Some(match (noun, prop) {
        ("Receive connector" | "Send connector", "Fqdn") => {
            "Specify the FQDN this connector will provide in response to HELO or EHLO:"
        }
        ("Receive connector" | "Send connector", "ProtocolLoggingLevel") => {
            "Protocol logging level:"
        }
        ("Receive connector" | "Send connector", "MaxMessageSize") => "Maximum message size:",
        ("Receive connector", "Bindings") => "Local IP addresses and ports:",
        ("Receive connector", "RemoteIPRanges") => "Remote IP address ranges:",
        ("Receive connector", "AuthMechanism") => "Authentication mechanisms",
        ("Receive connector", "PermissionGroups") => {
            "Specify who is allowed to connect to this Receive connector"
        }
        ("Send connector", "AddressSpaces") => "Address space (SMTP:domain;cost, one per line):",
        ("Send connector", "IsScopedConnector") => "Scoped send connector",
        ("Send connector", "DNSRoutingEnabled") => {
            "Use domain name system (DNS) \"MX\" records to route mail automatically"
        }
        ("Send connector", "SmartHosts") => "Route mail through the following smart hosts:",
        ("Send connector", "UseExternalDNSServersEnabled") => {
            "Use the External DNS Lookup settings on the transport server"
        }
        ("Send connector", "SmartHostAuthMechanism") => "Smart host authentication:",
        ("Send connector", "SourceTransportServers") => "Source servers:",
        ("Accepted Domain", "DomainName") => "Accepted Domain:",
        ("Accepted Domain", "DomainType") => "Domain type:",
        _ => return None,
    })
}
